"""The metric names the Grafana dashboard and the alert rules use, read from those files.

The end-to-end suite checks each one appears in the running platform's /metrics output:

    from infra.tests.metric_names import metric_names_by_source
    for source, names in metric_names_by_source().items(): ...

`source` says which process exposes a name: "django" (every Django web service: django-
prometheus and process metrics), "gateway", "playlist", "analysis" (the service's own metrics;
analysis_* come from the web process and the Celery worker, playlist_* from the web process and
the outbox relay), "flower", "rabbitmq" (its Prometheus plugin; not in a platform run without
Docker) and "prometheus" (series Prometheus makes itself, such as `up`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import yaml

INFRA = Path(__file__).resolve().parents[1]
DASHBOARDS = INFRA / "grafana" / "dashboards"
ALERTS = INFRA / "prometheus" / "alerts.yml"

# Grafana's variables, replaced by a plain value so that the expression is PromQL.
GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(
    r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
_IDENT = re.compile(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")
_KEYWORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "inf",
    "nan",
    "atan2",
}
PROMETHEUS_MADE = {
    "up",
    "ALERTS",
    "ALERTS_FOR_STATE",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
}


def to_promql(expr: str) -> str:
    """A dashboard expression with Grafana's variables replaced (longest name first)."""
    for name in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, GRAFANA_VARIABLES[name])
    return expr


def names_in(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (no full parser: strings, label matchers,
    ranges and grouping clauses are removed, then every identifier that is not a function
    call or a keyword is a metric name)."""
    text = _STRING.sub('""', to_promql(expr))
    text = _MATCHERS.sub("", text)
    text = _RANGE.sub("", text)
    text = _GROUPING.sub(" ", text)
    found = set()
    for match in _IDENT.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        if re.fullmatch(r"\d+[smhdwy]", name):
            continue
        found.add(name)
    return found


def dashboard_panels() -> Iterator[tuple[str, dict]]:
    """(dashboard file name, panel) for every panel of every dashboard, rows' children too."""
    for path in sorted(DASHBOARDS.glob("*.json")):
        model = json.loads(path.read_text())
        stack = list(model.get("panels", []))
        while stack:
            panel = stack.pop(0)
            stack.extend(panel.get("panels", []))
            yield path.name, panel


def dashboard_exprs() -> list[str]:
    return [
        target["expr"]
        for _, panel in dashboard_panels()
        for target in panel.get("targets", [])
        if target.get("expr")
    ]


def alert_rules() -> list[dict]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def alert_exprs() -> list[str]:
    return [rule["expr"] for rule in alert_rules()]


def metric_names(*, include_prometheus_made: bool = False) -> set[str]:
    """Every metric name the dashboards and the alert rules use."""
    names: set[str] = set()
    for expr in [*dashboard_exprs(), *alert_exprs()]:
        names |= names_in(expr)
    return names if include_prometheus_made else names - PROMETHEUS_MADE


def source_of(name: str) -> str:
    if name in PROMETHEUS_MADE:
        return "prometheus"
    for prefix, source in (
        ("django_", "django"),
        ("process_", "django"),
        ("gateway_", "gateway"),
        ("playlist_", "playlist"),
        ("analysis_", "analysis"),
        ("flower_", "flower"),
        ("rabbitmq_", "rabbitmq"),
    ):
        if name.startswith(prefix):
            return source
    raise ValueError(f"no known source exposes metric {name!r}")


def metric_names_by_source() -> dict[str, set[str]]:
    grouped: dict[str, set[str]] = {}
    for name in metric_names(include_prometheus_made=True):
        grouped.setdefault(source_of(name), set()).add(name)
    return grouped


def missing_from(exposition: str, names: set[str]) -> set[str]:
    """Names of `names` with no sample in a Prometheus text exposition (a /metrics body)."""
    present = {
        line.split("{", 1)[0].split(" ", 1)[0]
        for line in exposition.splitlines()
        if line and not line.startswith("#")
    }
    return {name for name in names if name not in present}
