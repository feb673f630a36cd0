"""Prometheus metrics of the analysis service (web and worker).

Names are the platform's agreed ones. With ``PROMETHEUS_MULTIPROC_DIR`` set (gunicorn workers,
prefork worker children) prometheus_client writes them to files that the exporter sums.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from common.events import EVENT_TYPES

OK = "ok"
DUPLICATE = "duplicate"
USER_GONE = "user_deleted"  # recorded, not counted: the user's UserDeleted came first
RETRIED = "retried"
REQUEUED = "requeued"
DEAD_LETTERED = "dead_lettered"

HIT = "hit"
MISS = "miss"
FALLBACK = "fallback"

# A label for anything that is not a known event type, so a bad message cannot create
# unbounded label values.
INVALID_TYPE = "invalid"

events_processed = Counter(
    "analysis_events_processed_total",
    "Events handled by the analysis worker, by type and outcome "
    "(ok, duplicate, user_deleted, retried, requeued, dead_lettered).",
    ["type", "outcome"],
)
event_lag = Histogram(
    "analysis_event_lag_seconds",
    "Seconds from an event's occurred_at to the commit of its counter change.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
cache_requests = Counter(
    "analysis_cache_requests_total",
    "Reads of the analysis cache, by result (hit, miss, fallback when the cache failed).",
    ["result"],
)
cache_invalidation_failures = Counter(
    "analysis_cache_invalidation_failures_total",
    "Cache invalidations after a commit that failed (Redis down): the events stay counted, "
    "the keys' old entries are served until their TTL (CACHE_TTL_SECONDS) ends.",
)


def type_label(event_type: object) -> str:
    return event_type if isinstance(event_type, str) and event_type in EVENT_TYPES else INVALID_TYPE


def count_event(event_type: object, outcome: str, count: int = 1) -> None:
    events_processed.labels(type=type_label(event_type), outcome=outcome).inc(count)
