"""Per-user cache of GET answers with ETags; a cache that is down only costs speed.

Every key of a user carries that user's current *version token*; each write to the user's
playlists replaces the token, so all their cached lists and details become unreachable at
once (they expire by TTL). The token is random, not a counter, so a token that was evicted
can never be re-issued and bring back stale entries.

An answer bigger than ``PLAYLIST_CACHE_MAX_BYTES`` (as JSON) is served but never stored, and one
user stores at most ``PLAYLIST_CACHE_USER_MAX_BYTES`` per cache lifetime, so no client can fill
the shared Redis (which never evicts) with huge answers or with many distinct pages.

A cache that fails follows the policy of every service (common.cache): reads and writes go on
without it; a failed invalidation is logged and counted
(``playlist_cache_invalidation_failures_total``) and never fails the write.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.utils.http import parse_etags

from common.cache import invalidation_failed
from playlists import metrics

logger = logging.getLogger(__name__)


def _user_key(user_id: str) -> str:
    return hashlib.sha256(user_id.encode()).hexdigest()[:32]


def _version_key(user_id: str) -> str:
    return f"playlists:v:{_user_key(user_id)}"


def _version(user_id: str) -> str:
    key = _version_key(user_id)
    token = cache.get(key)
    if token is None:
        cache.add(key, uuid.uuid4().hex, timeout=None)
        token = cache.get(key)
    if token is None:
        raise RuntimeError("the cache did not keep the version token")
    return str(token)


def entry_key(user_id: str, what: str) -> str | None:
    """The cache key for one answer of this user (None when the cache is unreachable)."""
    try:
        version = _version(user_id)
    except Exception as exc:
        logger.warning("playlist cache unavailable: %s: %s", type(exc).__name__, exc)
        return None
    digest = hashlib.sha256(what.encode()).hexdigest()[:32]
    return f"playlists:e:{_user_key(user_id)}:{version}:{digest}"


def get(key: str | None) -> dict[str, Any] | None:
    if key is None:
        return None
    try:
        value = cache.get(key)
    except Exception as exc:
        logger.warning("playlist cache read failed: %s: %s", type(exc).__name__, exc)
        return None
    return value if isinstance(value, dict) else None


def put(key: str | None, data: Any, *, user_id: str) -> dict[str, Any]:
    """Store an answer's data with its ETag; returns the entry even when the cache is down, the
    answer is too big to cache, or the user's cache budget is spent."""
    body = _canonical_json(data)
    value = {"etag": _etag(body), "data": data}
    if key is not None and len(body) > settings.PLAYLIST_CACHE_MAX_BYTES:
        logger.debug("playlist answer not cached: %d bytes", len(body))
        key = None
    if key is not None:
        try:
            if _within_user_budget(user_id, len(body)):
                cache.set(key, value)
        except Exception as exc:
            logger.warning("playlist cache write failed: %s: %s", type(exc).__name__, exc)
    return value


def _within_user_budget(user_id: str, size: int) -> bool:
    """Count ``size`` against the bytes this user may cache per cache lifetime (the counter
    lives as long as an entry), so at most about twice PLAYLIST_CACHE_USER_MAX_BYTES of one
    user's answers are ever in Redis, however many distinct pages they ask for."""
    key = f"playlists:n:{_user_key(user_id)}"
    cache.add(key, 0)
    return int(cache.incr(key, size)) <= settings.PLAYLIST_CACHE_USER_MAX_BYTES


def invalidate_user(user_id: str) -> bool:
    """Make every cached answer of this user unreachable (a new version token); False (logged,
    counted) when the cache failed. Never raises: the write it follows has committed."""
    try:
        cache.set(_version_key(user_id), uuid.uuid4().hex, timeout=None)
    except Exception as exc:
        invalidation_failed(
            exc,
            counter=metrics.CACHE_INVALIDATION_FAILURES,
            log=logger,
            stale="the user's cached answers",
        )
        return False
    return True


def _canonical_json(data: Any) -> bytes:
    # ASCII-escaped: never fails on a lone surrogate, and at least as long as the UTF-8 form.
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str).encode()


def _etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:40] + '"'


def etag_for(data: Any) -> str:
    return _etag(_canonical_json(data))


def matches(if_none_match: str | None, etag: str) -> bool:
    """True when an If-None-Match header names this ETag (weak comparison, or ``*``)."""
    if not if_none_match:
        return False
    tags = parse_etags(if_none_match)
    if "*" in tags:
        return True
    bare = etag.removeprefix("W/")
    return any(tag.removeprefix("W/") == bare for tag in tags)
