"""Prometheus configuration and alert rules: promtool checks, unit tests, coverage."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import INFRA, run
from metric_names import alert_rules

PROMETHEUS = INFRA / "prometheus"
CONFIG = PROMETHEUS / "prometheus.yml"
ALERTS = PROMETHEUS / "alerts.yml"
ALERTS_TEST = PROMETHEUS / "alerts_test.yml"

# Compose service -> the port Prometheus scrapes it on.
METRICS_PORTS = {
    "gateway": 4000,
    "auth": 3002,
    "playlist": 3003,
    "analysis": 3001,
    "analysis-worker": 9101,
    "playlist-relay": 9102,
    "flower": 5555,
    "rabbitmq": 15692,
}
# The alerts that must exist: name -> (its `for`, fragments its expression must hold).
REQUIRED_ALERTS = {
    "ServiceDown": ("1m", ["up == 0"]),
    "CircuitBreakerOpen": ("1m", ["gateway_breaker_state", ">= 2"]),
    "HighErrorRatio": ("1m", ['status=~"5.."', "[5m]", "> 0.05"]),
    "EventLagHigh": (
        "1m",
        ["histogram_quantile(0.95", "analysis_event_lag_seconds_bucket", "> 10"],
    ),
    "DeadLetterQueueNotEmpty": (None, ["rabbitmq_queue_messages_ready", ".dlq", "> 0"]),
    "OutboxBacklog": (None, ["playlist_outbox_oldest_pending_age_seconds", "> 60"]),
}


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return yaml.safe_load(CONFIG.read_text())


def jobs(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {job["job_name"]: job for job in config["scrape_configs"]}


def service_label(job: dict[str, Any]) -> str | None:
    for static in job.get("static_configs", []):
        if "service" in static.get("labels", {}):
            return static["labels"]["service"]
    for relabel in job.get("relabel_configs", []):
        if relabel.get("target_label") == "service":
            return relabel["replacement"]
    return None


def targets(job: dict[str, Any]) -> list[tuple[str, int]]:
    found = []
    for static in job.get("static_configs", []):
        for target in static["targets"]:
            host, port = target.rsplit(":", 1)
            found.append((host, int(port)))
    for sd in job.get("dns_sd_configs", []):
        assert sd["type"] == "A"
        found.extend((name, int(sd["port"])) for name in sd["names"])
    return found


def test_promtool_check_config(promtool):
    result = run([promtool, "check", "config", str(CONFIG)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_check_rules(promtool):
    result = run([promtool, "check", "rules", str(ALERTS)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_alert_unit_tests_pass(promtool):
    result = run([promtool, "test", "rules", str(ALERTS_TEST)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alert_unit_tests_fail_when_an_alert_never_fires(promtool, tmp_path):
    """The unit tests prove something: with each rule made silent, its test fails."""
    groups = yaml.safe_load(ALERTS.read_text())
    for group in groups["groups"]:
        for rule in group["rules"]:
            rule["expr"] = "vector(1) == 2"
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(groups))
    shutil.copy(ALERTS_TEST, tmp_path / "alerts_test.yml")
    result = run([promtool, "test", "rules", "alerts_test.yml"], cwd=tmp_path)
    assert result.returncode != 0
    for rule in alert_rules():
        assert f"alertname: {rule['alert']}" in result.stdout + result.stderr, rule["alert"]


def test_every_alert_has_a_firing_and_a_quiet_unit_test():
    tests = yaml.safe_load(ALERTS_TEST.read_text())
    assert tests["rule_files"] == ["alerts.yml"]
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check["exp_alerts"] else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - fires == set(), "alerts no unit test shows firing"
    assert names - quiet == set(), "alerts no unit test shows staying quiet"


def test_the_alerts_issue_5_asks_for():
    rules = {rule["alert"]: rule for rule in alert_rules()}
    for name, (duration, fragments) in REQUIRED_ALERTS.items():
        rule = rules[name]
        assert rule.get("for") == duration, name
        for fragment in fragments:
            assert fragment in rule["expr"], f"{name}: {fragment!r} not in its expression"
    for rule in rules.values():
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_every_metrics_endpoint_is_scraped_with_a_service_label(config, services):
    by_job = jobs(config)
    for name, port in METRICS_PORTS.items():
        assert name in services, name
        job = by_job[name]
        assert service_label(job) == name, f"job {name} lacks service label {name!r}"
        assert targets(job) == [(name, port)], name
    assert set(by_job) == {*METRICS_PORTS, "prometheus"}


def test_services_that_scale_are_discovered_by_dns(config, services):
    """Every replica (`--scale`) is its own target; a fixed target would hit one at random."""
    for name, job in jobs(config).items():
        if name == "prometheus":
            continue
        scalable = "ports" not in services[name]
        assert bool(job.get("dns_sd_configs")) == scalable, name


def test_scrape_ports_match_what_the_containers_serve(config, services):
    assert services["analysis-worker"]["environment"]["ANALYSIS_WORKER_METRICS_PORT"] == "9101"
    assert services["playlist-relay"]["environment"]["PLAYLIST_RELAY_METRICS_PORT"] == "9102"
    for name in ("gateway", "auth", "playlist", "analysis"):
        assert int(services[name]["build"]["args"]["PORT"]) == METRICS_PORTS[name]
    assert jobs(config)["rabbitmq"]["metrics_path"] == "/metrics/per-object"
    assert "--port=5555" in services["flower"]["command"]


def test_service_missing_covers_every_scraped_job(config):
    expr = next(rule["expr"] for rule in alert_rules() if rule["alert"] == "ServiceMissing")
    for name in jobs(config):
        if name != "prometheus":
            assert f'absent(up{{job="{name}", service="{name}"}})' in expr, name


def test_prometheus_container_loads_this_config(services):
    spec = services["prometheus"]
    mounts = {str(v).split(":")[1]: str(v).split(":")[0] for v in spec["volumes"]}
    assert Path(INFRA / mounts["/etc/prometheus"]) == PROMETHEUS
    assert "--config.file=/etc/prometheus/prometheus.yml" in spec["command"]
    assert yaml.safe_load(CONFIG.read_text())["rule_files"] == ["alerts.yml"]
