"""Writes infra/grafana/dashboards/musicstream.json, the platform's Grafana dashboard.

    python infra/grafana/build_dashboard.py          # rewrite the JSON after editing this file
    python infra/grafana/build_dashboard.py --check  # exit 1 when the JSON is out of date

The dashboard is written from code so that its panels stay regular (same datasource, units,
legends, grid) and so that tests can read every PromQL expression it uses.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).resolve().parent / "dashboards" / "musicstream.json"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}  # provisioning/datasources uid
UID = "musicstream-overview"
RATE = "$__rate_interval"
WIDTH = 24


def target(expr: str, legend: str = "", ref: str = "A") -> dict[str, Any]:
    return {
        "refId": ref,
        "datasource": DATASOURCE,
        "expr": expr,
        "legendFormat": legend or "__auto",
        "range": True,
    }


def targets(*pairs: tuple[str, str]) -> list[dict[str, Any]]:
    return [target(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(pairs)]


def quantiles(metric: str, by: str, label: str) -> list[tuple[str, str]]:
    """p50, p95 and p99 of a histogram, per `by` label set."""
    group = f"{by}, le" if by else "le"
    prefix = f"{{{{{label}}}}} " if label else ""
    return [
        (
            f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket[{RATE}])))",
            f"{prefix}p{int(q * 100)}",
        )
        for q in (0.5, 0.95, 0.99)
    ]


class Layout:
    """Hands out panel ids and grid positions, row by row."""

    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []
        self.next_id = 1
        self.y = 0
        self.x = 0
        self.row_height = 0

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def row(self, title: str) -> None:
        self._newline()
        self.panels.append(
            {
                "type": "row",
                "id": self._id(),
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": WIDTH, "x": 0, "y": self.y},
                "panels": [],
            }
        )
        self.y += 1

    def _newline(self) -> None:
        if self.x:
            self.y += self.row_height
            self.x = 0
            self.row_height = 0

    def add(self, panel: dict[str, Any], w: int = 12, h: int = 8) -> None:
        if self.x + w > WIDTH:
            self._newline()
        panel["id"] = self._id()
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.panels.append(panel)
        self.x += w
        self.row_height = max(self.row_height, h)


def timeseries(
    title: str,
    description: str,
    tgts: list[dict[str, Any]],
    unit: str,
    *,
    stack: bool = False,
    minimum: float | None = 0,
    maximum: float | None = None,
    draw: str = "line",
) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "unit": unit,
        "custom": {
            "drawStyle": draw,
            "lineWidth": 1,
            "fillOpacity": 10,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"mode": "normal" if stack else "none", "group": "A"},
        },
    }
    if minimum is not None:
        defaults["min"] = minimum
    if maximum is not None:
        defaults["max"] = maximum
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": tgts,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "legend": {
                "displayMode": "table",
                "placement": "right",
                "showLegend": True,
                "calcs": ["lastNotNull", "max"],
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }


def stat(
    title: str,
    description: str,
    tgts: list[dict[str, Any]],
    unit: str,
    thresholds: list[tuple[float | None, str]],
) -> dict[str, Any]:
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": tgts,
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "thresholds": {
                    "mode": "absolute",
                    "steps": [{"color": color, "value": value} for value, color in thresholds],
                },
            },
            "overrides": [],
        },
        "options": {
            "colorMode": "background",
            "graphMode": "none",
            "justifyMode": "auto",
            "textMode": "value_and_name",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        },
    }


def breaker_timeline() -> dict[str, Any]:
    states = [("0", "closed", "green"), ("1", "half-open", "yellow"), ("2", "open", "red")]
    return {
        "type": "state-timeline",
        "title": "Circuit breaker state per upstream",
        "description": "The gateway's breaker for each upstream: closed (calls pass), open "
        "(answers 503 at once without calling), half-open (one probe call).",
        "datasource": DATASOURCE,
        "targets": [target("max by (upstream) (gateway_breaker_state)", "{{upstream}}")],
        "fieldConfig": {
            "defaults": {
                "mappings": [
                    {
                        "type": "value",
                        "options": {
                            value: {"text": text, "color": color, "index": i}
                            for i, (value, text, color) in enumerate(states)
                        },
                    }
                ],
                "thresholds": {"mode": "absolute", "steps": [{"color": "green", "value": None}]},
                "color": {"mode": "thresholds"},
            },
            "overrides": [],
        },
        "options": {
            "showValue": "never",
            "mergeValues": True,
            "rowHeight": 0.8,
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "single", "sort": "none"},
        },
    }


def build() -> dict[str, Any]:
    layout = Layout()
    responses = "django_http_responses_total_by_status_view_method_total"

    layout.row("Overview")
    layout.add(
        stat(
            "Targets up",
            "Scrape targets answering, per service (0 means the service is down: "
            "alerts ServiceDown / ServiceMissing).",
            [target("sum by (service) (up)", "{{service}}")],
            "none",
            [(None, "red"), (1, "green")],
        ),
        w=24,
        h=4,
    )

    layout.row("HTTP (per service)")
    layout.add(
        timeseries(
            "Request rate",
            "Requests per second each Django service answers (django-prometheus, "
            "summed over gunicorn workers and replicas).",
            [
                target(
                    "sum by (service) (rate("
                    f"django_http_requests_total_by_view_transport_method_total[{RATE}]))",
                    "{{service}}",
                )
            ],
            "reqps",
        )
    )
    layout.add(
        timeseries(
            "Error ratio (5xx)",
            "Share of answers with a 5xx status over all answers, per service. "
            "Alert HighErrorRatio fires above 5 % over 5 minutes.",
            [
                target(
                    f'sum by (service) (rate({responses}{{status=~"5.."}}[{RATE}])) / '
                    f"sum by (service) (rate({responses}[{RATE}]))",
                    "{{service}}",
                )
            ],
            "percentunit",
            maximum=1,
        )
    )
    layout.add(
        timeseries(
            "Latency p50 / p95 / p99",
            "Time Django takes to answer, per service (from the "
            "django-prometheus latency histogram).",
            targets(
                *quantiles(
                    "django_http_requests_latency_seconds_by_view_method", "service", "service"
                )
            ),
            "s",
        )
    )
    layout.add(
        timeseries(
            "Answers by status class",
            "Answers per second by status class (2xx, 3xx, 4xx, 5xx), all services.",
            [
                target(
                    f"sum by (status_class) (label_replace(rate({responses}[{RATE}]), "
                    '"status_class", "${1}xx", "status", "([0-9]).*"))',
                    "{{status_class}}",
                )
            ],
            "reqps",
            stack=True,
        )
    )

    layout.row("Gateway")
    layout.add(
        timeseries(
            "Upstream requests by status",
            "Requests the gateway sent to each upstream, by the "
            "upstream's answer (HTTP status, connection_error, timeout).",
            [
                target(
                    f"sum by (upstream, status) (rate(gateway_upstream_requests_total[{RATE}]))",
                    "{{upstream}} {{status}}",
                )
            ],
            "reqps",
        )
    )
    layout.add(
        timeseries(
            "Upstream latency p50 / p95 / p99",
            "Time from sending a request upstream to having its whole answer, per upstream.",
            targets(
                *quantiles("gateway_upstream_request_duration_seconds", "upstream", "upstream")
            ),
            "s",
        )
    )
    layout.add(breaker_timeline())
    layout.add(
        timeseries(
            "Breaker transitions",
            "State changes of the gateway's circuit breakers, per upstream and new state.",
            [
                target(
                    f"sum by (upstream, to_state) (increase(gateway_breaker_transitions_total"
                    f"[{RATE}]))",
                    "{{upstream}} -> {{to_state}}",
                )
            ],
            "short",
            draw="bars",
        )
    )
    layout.add(
        timeseries(
            "Rejected requests",
            "Requests the gateway answered itself, by reason: unauthorized "
            "(401), payload_too_large (413), throttled (429), breaker_open (503); and requests "
            "that presented a revoked token.",
            targets(
                (f"sum by (reason) (rate(gateway_rejected_requests_total[{RATE}]))", "{{reason}}"),
                (f"sum(rate(gateway_revoked_token_hits_total[{RATE}]))", "revoked token"),
            ),
            "reqps",
            stack=True,
        ),
        w=24,
    )

    layout.row("Events")
    layout.add(
        timeseries(
            "Events published vs processed",
            "Events the playlist service published to RabbitMQ "
            "(by outcome: published, failed) against events the analysis workers processed (ok, "
            "duplicate, retried, dead_lettered). Published and processed ok should match.",
            targets(
                (
                    f"sum by (outcome) (rate(playlist_events_published_total[{RATE}]))",
                    "published {{outcome}}",
                ),
                (
                    f"sum by (outcome) (rate(analysis_events_processed_total[{RATE}]))",
                    "processed {{outcome}}",
                ),
            ),
            "ops",
        )
    )
    layout.add(
        timeseries(
            "Event lag p50 / p95 / p99",
            "Time from an event's occurred_at to the commit of its "
            "counter change in analysis. Alert EventLagHigh fires when p95 stays above 10 s.",
            targets(*quantiles("analysis_event_lag_seconds", "", "")),
            "s",
        )
    )
    layout.add(
        timeseries(
            "Queue depths",
            "Messages waiting (ready) and delivered but not yet acknowledged "
            "(unacked) per RabbitMQ queue. A *.dlq queue above 0 fires DeadLetterQueueNotEmpty.",
            targets(
                ("sum by (queue) (rabbitmq_queue_messages_ready)", "{{queue}} ready"),
                ("sum by (queue) (rabbitmq_queue_messages_unacked)", "{{queue}} unacked"),
            ),
            "short",
        )
    )
    layout.add(
        timeseries(
            "Playlist outbox",
            "Events written with their change but not yet confirmed by the "
            "broker, and the age of the oldest one. Alert OutboxBacklog fires above 60 s.",
            targets(
                ("max(playlist_outbox_pending)", "pending events"),
                ("max(playlist_outbox_oldest_pending_age_seconds)", "oldest pending age (s)"),
            ),
            "short",
        )
    )
    layout.add(
        timeseries(
            "Playlist writes",
            "Playlists created, updated, deleted and tracks played per second.",
            [target(f"sum by (operation) (rate(playlist_writes_total[{RATE}]))", "{{operation}}")],
            "ops",
            stack=True,
        )
    )
    layout.add(
        timeseries(
            "Celery workers and tasks",
            "Workers Flower sees online, and task events per second "
            "by type (from Flower's /metrics).",
            targets(
                ("sum(flower_worker_online)", "workers online"),
                (f"sum by (type) (rate(flower_events_total[{RATE}]))", "{{type}}"),
            ),
            "short",
        )
    )

    layout.row("Cache")
    layout.add(
        timeseries(
            "Analysis cache hit ratio",
            "Share of analysis reads answered from Redis.",
            [
                target(
                    f'sum(rate(analysis_cache_requests_total{{result="hit"}}[{RATE}])) / '
                    f"sum(rate(analysis_cache_requests_total[{RATE}]))",
                    "hit ratio",
                )
            ],
            "percentunit",
            maximum=1,
        )
    )
    layout.add(
        timeseries(
            "Analysis cache reads by result",
            "hit, miss, and fallback (Redis failed: read from the database instead).",
            [
                target(
                    f"sum by (result) (rate(analysis_cache_requests_total[{RATE}]))", "{{result}}"
                )
            ],
            "ops",
            stack=True,
        )
    )

    layout.row("Resources (per service)")
    layout.add(
        timeseries(
            "CPU",
            "CPU seconds per second used by each service's processes (1 = one core).",
            [target(f"sum by (service) (rate(process_cpu_seconds_total[{RATE}]))", "{{service}}")],
            "short",
        )
    )
    layout.add(
        timeseries(
            "Memory (resident)",
            "Resident memory of each service's processes.",
            [target("sum by (service) (process_resident_memory_bytes)", "{{service}}")],
            "bytes",
        )
    )

    return {
        "uid": UID,
        "title": "MusicStream overview",
        "description": "Traffic, errors, latency, circuit breakers, events, queues, cache and "
        "resources of the MusicStream platform.",
        "tags": ["musicstream"],
        "timezone": "utc",
        "editable": False,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "templating": {"list": []},
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "links": [],
        "panels": layout.panels,
    }


def render() -> str:
    return json.dumps(build(), indent=2) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        current = OUTPUT.read_text() if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT} is out of date: run python {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
