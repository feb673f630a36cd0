"""Gateway metrics (names agreed for the whole platform; keep them exact)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

BREAKER_STATE_VALUES = {"closed": 0, "half-open": 1, "open": 2}

upstream_requests = Counter(
    "gateway_upstream_requests_total",
    "Requests the gateway sent upstream, by upstream and answer status "
    "(HTTP status, or connection_error / timeout).",
    ["upstream", "status"],
)
upstream_duration = Histogram(
    "gateway_upstream_request_duration_seconds",
    "Time from sending a request upstream to having its whole answer.",
    ["upstream"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
# Several gunicorn workers share one breaker state in Redis; the latest write from any worker
# is the truth, hence "livemostrecent".
breaker_state = Gauge(
    "gateway_breaker_state",
    "Circuit breaker state per upstream: 0 closed, 1 half-open, 2 open.",
    ["upstream"],
    multiprocess_mode="livemostrecent",
)
breaker_transitions = Counter(
    "gateway_breaker_transitions_total",
    "Circuit breaker state changes made by this gateway.",
    ["upstream", "from_state", "to_state"],
)
rejected_requests = Counter(
    "gateway_rejected_requests_total",
    "Requests the gateway answered itself without calling upstream, by reason "
    "(unauthorized, payload_too_large, throttled, breaker_open, bad_path).",
    ["reason"],
)
revoked_token_hits = Counter(
    "gateway_revoked_token_hits_total",
    "Requests that presented an access token revoked by logout or account deletion.",
)


REJECTION_REASONS = ("unauthorized", "payload_too_large", "throttled", "breaker_open", "bad_path")
# The transitions a breaker can make (pybreaker's state names).
BREAKER_TRANSITIONS = (
    ("closed", "open"),
    ("open", "half-open"),
    ("half-open", "closed"),
    ("half-open", "open"),
)


def init_known_labels(upstream_names: list[str]) -> None:
    """Expose every family from the first scrape (label sets known in advance start at 0).

    The breaker gauge children are created without a value of their own: in multiprocess
    "mostrecent" mode an untouched child never outranks a state another worker wrote.
    """
    for reason in REJECTION_REASONS:
        rejected_requests.labels(reason=reason)
    for name in upstream_names:
        upstream_duration.labels(upstream=name)
        for old, new in BREAKER_TRANSITIONS:
            breaker_transitions.labels(upstream=name, from_state=old, to_state=new)
        breaker_state.labels(upstream=name)
