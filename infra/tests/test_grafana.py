"""Grafana provisioning and the dashboard model; the metric names it and the alerts use."""

from __future__ import annotations

import importlib.util
import json
import re
from typing import Any

import pytest
import yaml
from conftest import INFRA, REPO, run
from metric_names import (
    dashboard_exprs,
    dashboard_panels,
    metric_names,
    metric_names_by_source,
    missing_from,
    names_in,
    source_of,
    to_promql,
)

GRAFANA = INFRA / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "musicstream.json"
# The metric names the whole platform agreed on (see the services' metrics.py files).
AGREED = {
    "gateway": {
        "gateway_upstream_requests_total",
        "gateway_upstream_request_duration_seconds",
        "gateway_breaker_state",
        "gateway_breaker_transitions_total",
        "gateway_rejected_requests_total",
        "gateway_revoked_token_hits_total",
    },
    "playlist": {
        "playlist_writes_total",
        "playlist_events_published_total",
        "playlist_outbox_pending",
        "playlist_outbox_oldest_pending_age_seconds",
    },
    "analysis": {
        "analysis_events_processed_total",
        "analysis_event_lag_seconds",
        "analysis_cache_requests_total",
    },
}
# What the dashboard must show: a title fragment -> a fragment of its queries.
REQUIRED_PANELS = {
    "Request rate": "django_http_requests_total_by_view_transport_method_total",
    "Latency p50 / p95 / p99": "django_http_requests_latency_seconds_by_view_method_bucket",
    "Error ratio": 'status=~"5.."',
    "Circuit breaker state": "gateway_breaker_state",
    "Events published vs processed": "analysis_events_processed_total",
    "Event lag": "analysis_event_lag_seconds_bucket",
    "Queue depths": "rabbitmq_queue_messages_ready",
    "cache hit ratio": 'result="hit"',
    "CPU": "process_cpu_seconds_total",
    "Memory": "process_resident_memory_bytes",
}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


@pytest.fixture(scope="module")
def datasource() -> dict[str, Any]:
    config = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    (source,) = config["datasources"]
    return source


def panels() -> list[dict[str, Any]]:
    return [panel for _, panel in dashboard_panels()]


def test_dashboard_is_a_grafana_dashboard_model(dashboard):
    assert re.fullmatch(r"[a-zA-Z0-9_-]{1,40}", dashboard["uid"])
    assert dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    assert dashboard["time"] == {"from": "now-1h", "to": "now"}
    assert isinstance(dashboard["panels"], list) and dashboard["panels"]
    assert "id" not in dashboard or dashboard["id"] is None  # provisioning assigns ids
    ids = [panel["id"] for panel in panels()]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    assert all(isinstance(i, int) and i > 0 for i in ids)


def test_panels_fit_the_grid_without_overlapping():
    taken: set[tuple[int, int]] = set()
    for panel in panels():
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def test_every_panel_queries_the_provisioned_datasource(datasource):
    for panel in panels():
        if panel["type"] == "row":
            continue
        assert panel["type"] in ("timeseries", "stat", "state-timeline"), panel["title"]
        assert panel["title"] and panel["description"], panel["id"]
        assert panel["datasource"] == {"type": "prometheus", "uid": datasource["uid"]}
        assert panel["targets"], f"{panel['title']} has no query"
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == datasource["uid"]
            assert target["expr"].strip()


def test_every_dashboard_query_is_valid_promql(promtool, tmp_path):
    """promtool parses each expression as a recording rule (Grafana variables replaced)."""
    exprs = dashboard_exprs()
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:expr_{i}", "expr": to_promql(expr)}
                    for i, expr in enumerate(exprs)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = run([promtool, "check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(exprs)} rules found" in result.stdout


def test_the_panels_issue_5_asks_for():
    for title, fragment in REQUIRED_PANELS.items():
        matching = [
            panel
            for panel in panels()
            if title.lower() in panel["title"].lower() and panel["type"] != "row"
        ]
        assert matching, f"no panel titled like {title!r}"
        exprs = " ".join(t["expr"] for p in matching for t in p["targets"])
        assert fragment in exprs, f"{title!r} does not query {fragment}"
    per_service = [
        "Request rate",
        "Error ratio",
        "Latency p50 / p95 / p99",
        "CPU",
        "Memory (resident)",
    ]
    for panel in panels():
        if panel["title"] in per_service:
            for target in panel["targets"]:
                assert "by (service" in target["expr"], panel["title"]
    timeline = next(p for p in panels() if p["type"] == "state-timeline")
    texts = {
        v["text"]
        for m in timeline["fieldConfig"]["defaults"]["mappings"]
        for v in m["options"].values()
    }
    assert texts == {"closed", "half-open", "open"}


def test_dashboard_shows_every_agreed_service_metric():
    used = metric_names()
    for service, names in AGREED.items():
        for name in names:
            assert name in used or f"{name}_bucket" in used, f"{service}: {name} not shown"


def test_service_metrics_used_are_defined_in_the_service_code():
    """Each gateway_/playlist_/analysis_ name is a metric some service's code registers."""
    for source in ("gateway", "playlist", "analysis"):
        code = "\n".join(
            path.read_text()
            for path in (REPO / f"{source}_project").rglob("*.py")
            if "tests" not in path.parts
        )
        for name in metric_names_by_source().get(source, set()):
            base = re.sub(r"_bucket$", "", name)
            assert f'"{base}"' in code, f"{name}: no metric {base!r} in {source}_project"


def test_datasource_provisioning_points_at_the_compose_prometheus(datasource, services):
    assert datasource["type"] == "prometheus"
    assert datasource["uid"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    assert datasource["access"] == "proxy"
    assert "prometheus" in services


def test_dashboard_provisioning_reads_the_mounted_folder(services):
    config = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "musicstream.yml").read_text()
    )
    (provider,) = config["providers"]
    mounts = {str(v).split(":")[1]: str(v).split(":")[0] for v in services["grafana"]["volumes"]}
    assert (INFRA / mounts[provider["options"]["path"]]).resolve() == DASHBOARD.parent
    assert (INFRA / mounts["/etc/grafana/provisioning"]).resolve() == GRAFANA / "provisioning"
    assert provider["type"] == "file"


def test_dashboard_json_is_what_the_generator_writes():
    spec = importlib.util.spec_from_file_location("build_dashboard", GRAFANA / "build_dashboard.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.render() == DASHBOARD.read_text(), (
        "run python infra/grafana/build_dashboard.py after editing it"
    )


# ------------------------------------------------------------------ metric_names helpers


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up == 0", {"up"}),
        ('sum by (service, le) (rate(a_seconds_bucket{x="y", le!="1"}[5m]))', {"a_seconds_bucket"}),
        (
            "histogram_quantile(0.95, sum by (le) (rate(lag_bucket[$__rate_interval]))) > 10",
            {"lag_bucket"},
        ),
        ('label_replace(rate(r_total[5m]), "c", "${1}xx", "status", "([0-9]).*")', {"r_total"}),
        ('sum(x) / on (a) group_left (b) sum without (c) (y) or absent(z{j="k"})', {"x", "y", "z"}),
        ("max(gauge offset 5m) and bool 1", {"gauge"}),
    ],
)
def test_names_in_expression(expr, names):
    assert names_in(expr) == names


def test_every_name_has_a_source_and_the_exposition_check_works():
    grouped = metric_names_by_source()
    assert set(grouped) <= {
        "django",
        "gateway",
        "playlist",
        "analysis",
        "flower",
        "rabbitmq",
        "prometheus",
    }
    assert grouped["prometheus"] == {"up"}
    with pytest.raises(ValueError, match="no known source"):
        source_of("node_cpu_seconds_total")
    text = (
        "# HELP gateway_revoked_token_hits_total Requests with a revoked token.\n"
        "# TYPE gateway_breaker_state gauge\n"
        'gateway_breaker_state{upstream="auth"} 0.0\nprocess_cpu_seconds_total 1.5\n'
    )
    assert missing_from(
        text,
        {"gateway_breaker_state", "process_cpu_seconds_total", "gateway_revoked_token_hits_total"},
    ) == {"gateway_revoked_token_hits_total"}
