"""Cache-aside reads of the analysis API and the keys an event invalidates.

Reads go to the cache first and to the database on a miss; a cache that fails follows the
policy of every service (common.cache): reads go to the database (and count a ``fallback``),
never a 500. The worker invalidates the keys a change touches right after its transaction
commits; when that fails (Redis down) the event stays counted (no retry, no dead letter), the
failure is logged and counted, and the old entries are served until their TTL
(``CACHE_TTL_SECONDS``) ends.

Invalidation bumps a generation counter per key instead of deleting the value. A plain delete
has a race: a reader that loaded from the database just before the commit could store the old
value just after the delete, and it would be served for a whole TTL. Here a reader notes the
generation before it loads and stores the value tagged with it; a value whose generation is no
longer current is a miss, so a read after an event is processed never shows the old value.
Generation counters never expire (an expired counter would make old values current again).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TypeVar
from urllib.parse import quote

from django.core.cache import cache

from analysis import metrics
from common.cache import CACHE_ERRORS, invalidation_failed

logger = logging.getLogger(__name__)

KEY_VERSION = "v1"
# Named anew when the global list got its distinct-users rule: lists cached before it are
# never served.
GLOBAL_GENRES_KEY = f"analysis:{KEY_VERSION}:genres:global-min-users"

T = TypeVar("T")


def _user(user_id: str) -> str:
    # Any string may be a user id; the quoted form is a safe key for every cache backend.
    return quote(user_id, safe="")


def summary_key(user_id: str) -> str:
    return f"analysis:{KEY_VERSION}:summary:{_user(user_id)}"


def user_genres_key(user_id: str) -> str:
    return f"analysis:{KEY_VERSION}:genres:user:{_user(user_id)}"


def _generation_key(key: str) -> str:
    return f"{key}:gen"


def cache_read_through(*, key: str, load: Callable[[], T]) -> T:
    """The cached value of ``key``, else ``load()`` (stored for the configured TTL)."""
    generation_key = _generation_key(key)
    try:
        found = cache.get_many([key, generation_key])
    except CACHE_ERRORS as exc:
        metrics.cache_requests.labels(result=metrics.FALLBACK).inc()
        logger.warning("cache unavailable, reading from the database: %s", exc)
        return load()
    generation = found.get(generation_key, 0)
    entry = found.get(key)
    if isinstance(entry, tuple) and len(entry) == 2 and entry[0] == generation:
        metrics.cache_requests.labels(result=metrics.HIT).inc()
        return entry[1]  # type: ignore[no-any-return]
    metrics.cache_requests.labels(result=metrics.MISS).inc()
    value = load()
    try:
        # Always with the cache's TTL (never timeout=None): an entry whose invalidation failed
        # (Redis down after a commit) is served stale for at most CACHE_TTL_SECONDS.
        cache.set(key, (generation, value))
    except CACHE_ERRORS as exc:
        logger.warning("cache unavailable, value not stored: %s", exc)
    return value


def cache_invalidate(*, keys: Iterable[str]) -> bool:
    """Make the values of ``keys`` stale; False (logged, counted in
    ``analysis_cache_invalidation_failures_total``) when the cache failed. Never raises: it runs
    after the counters committed, and an event already counted must not be retried or
    dead-lettered because Redis was down.

    A key whose generation could not be bumped keeps serving its current entry, but only until
    that entry expires: every entry is stored with the cache's TTL (``CACHE_TTL_SECONDS``), so
    the next read after it loads the committed value. Generation counters never expire, so a
    bump that did happen is never undone."""
    keys = list(keys)
    try:
        for key in keys:
            generation_key = _generation_key(key)
            try:
                cache.incr(generation_key)
            except ValueError:  # no counter yet: start one (add() is atomic; a racing incr wins)
                if not cache.add(generation_key, 1, timeout=None):
                    cache.incr(generation_key)
    except CACHE_ERRORS as exc:
        # Stop at the first failure: each further key would wait for the socket timeout too.
        invalidation_failed(
            exc,
            counter=metrics.cache_invalidation_failures,
            log=logger,
            stale=f"{len(keys)} key(s)",
        )
        return False
    return True
