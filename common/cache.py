"""The cache policy of every service that caches its answers (playlist, analysis).

A cache (Redis) that fails costs speed, never an answer and never a write:

- a read that fails is answered from the database (logged);
- an entry that cannot be stored is served all the same (logged);
- an invalidation that fails after the write committed never fails nor retries that write: it
  is logged and counted (``<service>_cache_invalidation_failures_total``, see
  :func:`invalidation_failed`), and the entries it should have made unreachable are served
  until their TTL ends. Every entry is therefore stored with the cache's TTL (never
  ``timeout=None``); only the markers that make entries unreachable (playlist's per-user
  version token, analysis' generation counters) never expire, so an invalidation that did
  happen is never undone.

How a service makes its entries unreachable is its own (a per-user version token, generation
counters per key); these rules are the same.
"""

from __future__ import annotations

import logging

from django_redis.exceptions import ConnectionInterrupted
from prometheus_client import Counter
from redis.exceptions import RedisError

# What a failing cache raises: django-redis wraps most redis errors in ConnectionInterrupted.
CACHE_ERRORS: tuple[type[BaseException], ...] = (ConnectionInterrupted, RedisError, OSError)


def invalidation_failed(
    exc: BaseException, *, counter: Counter, log: logging.Logger, stale: str
) -> None:
    """Log and count an invalidation that failed after its commit; ``stale`` says which
    entries stay served until their TTL ends. Never raises."""
    counter.inc()
    log.warning(
        "cache unavailable after the commit, %s stay stale until they expire: %s: %s",
        stale,
        type(exc).__name__,
        exc,
    )
