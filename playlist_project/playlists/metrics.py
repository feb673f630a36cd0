"""Prometheus metrics of the playlist service (names agreed for the whole platform).

Counters and gauges work under gunicorn with several workers: prometheus_client's multiprocess
mode (PROMETHEUS_MULTIPROC_DIR) sums counters; the outbox gauges describe the shared database,
so the most recent value any process measured is the right one.
"""

from __future__ import annotations

import logging
import time

from prometheus_client import Counter, Gauge

logger = logging.getLogger(__name__)

WRITE_OPERATIONS = ("created", "updated", "deleted", "played")

PLAYLIST_WRITES = Counter(
    "playlist_writes_total",
    "Playlist writes that succeeded, by operation (created, updated, deleted, played).",
    ["operation"],
)
EVENTS_PUBLISHED = Counter(
    "playlist_events_published_total",
    "Outbox events handed to the broker, by event type and outcome (published, failed).",
    ["type", "outcome"],
)
CACHE_INVALIDATION_FAILURES = Counter(
    "playlist_cache_invalidation_failures_total",
    "Cache invalidations after a write that failed (Redis down): the write stands, the user's "
    "cached answers are served until their TTL ends (common.cache).",
)
OUTBOX_PENDING = Gauge(
    "playlist_outbox_pending",
    "Events written to the outbox and not yet confirmed by the broker.",
    multiprocess_mode="mostrecent",
)
OUTBOX_OLDEST_AGE = Gauge(
    "playlist_outbox_oldest_pending_age_seconds",
    "Age of the oldest event still waiting in the outbox (0 when it is empty).",
    multiprocess_mode="mostrecent",
)

for _operation in WRITE_OPERATIONS:
    PLAYLIST_WRITES.labels(operation=_operation)


def refresh_outbox_gauges() -> bool:
    """Measure the outbox now; False (gauges untouched) when the database does not answer."""
    from playlists.outbox import PlaylistOutboxStore

    try:
        count, oldest = PlaylistOutboxStore().stats()
    except Exception as exc:
        logger.warning("could not measure the outbox: %s: %s", type(exc).__name__, exc)
        return False
    OUTBOX_PENDING.set(count)
    OUTBOX_OLDEST_AGE.set(max(0.0, time.time() - oldest) if oldest is not None else 0.0)
    return True
