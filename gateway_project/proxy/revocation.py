"""Revoked access tokens: the per-token list (``jti``) and the per-user sessions mark.

Logging out (``POST /api/auth/logout``) or deleting the account (``DELETE /api/auth/me``) must
make the caller's access token stop working at once, although access tokens are stateless JWTs.
Before the gateway forwards one of those requests, it writes the token's ``jti`` into the Django
cache (Redis, so every gateway worker and replica sees it) with a lifetime equal to the token's
remaining validity, and takes it off again unless auth answers 2xx (or times out: auth may have
ended the session). If the write fails, auth is not called at all (503
``revocation_unavailable``, the client keeps its session and can retry), so no client is told it
logged out while its access token still works. After ``exp`` the signature check refuses the
token anyway, so the list never grows beyond the tokens still alive. The refresh token is
blacklisted by the auth service itself, so a revoked session cannot mint new access tokens
either. "Log out everywhere", a password change and an account deletion set the user's sessions
mark instead (``proxy.sessions``): every token issued before it is refused.

Every token check reads both (``token_is_revoked``). If the cache does not answer, the check
fails closed (503): a logged-out token must never work again because Redis blinked. With user
throttling on, the same Redis round trip also counts the request in the caller's rate-limit
window (one Lua script, ``EVALSHA``): one round trip per request instead of two, a measured win
(docs/performance.md). This module is the only one that knows about it.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.core.cache import cache
from redis.commands.core import Script

from proxy import throttling
from proxy.exceptions import RevocationUnavailable

logger = logging.getLogger(__name__)

REVOKED_KEY = "gateway:revoked:{jti}"
# Per user: tokens issued before this time (ms since the epoch) are refused. Set by "log out
# everywhere", a password change and an account deletion (proxy.sessions).
SESSIONS_KEY = "gateway:sessions-after:{user_id}"
# One command for the revocation reads and the caller's rate-limit count: 1 if KEYS[1] (the
# revocation entry) exists, KEYS[2] (the caller's window counter) after this request's
# increment, created with a lifetime of ARGV[1] seconds, and the user's sessions mark
# (KEYS[3]) or false. Sent as EVALSHA; redis-py loads the script again when Redis no longer
# knows it (restart, SCRIPT FLUSH).
_REVOKED_AND_COUNT = Script(
    None,
    b"""
local revoked = redis.call('EXISTS', KEYS[1])
local count = redis.call('INCR', KEYS[2])
if count == 1 then redis.call('EXPIRE', KEYS[2], ARGV[1]) end
return {revoked, count, redis.call('GET', KEYS[3])}
""",
)


def token_is_revoked(*, jti: str, user_id: str | None = None, issued_ms: int = 0) -> bool:
    """True when ``jti`` is on the revocation list or, with a ``user_id``, the token was issued
    (``issued_ms``) before that user's sessions mark; 503 if Redis cannot be read.

    With a ``user_id`` (and user throttling on), the same round trip also counts the request in
    the caller's rate-limit window (``proxy.throttling.user_window``), which the user throttle
    then uses instead of a round trip of its own.
    """
    revoked_key = REVOKED_KEY.format(jti=jti)
    try:
        if not user_id:
            return cache.get(revoked_key) is not None
        mark_key = SESSIONS_KEY.format(user_id=user_id)
        window = throttling.user_window(user_id=user_id)
        if window is None:
            found = cache.get_many([revoked_key, mark_key])
            revoked, mark = revoked_key in found, found.get(mark_key)
        else:
            key, ttl = window
            revoked, count, mark = _REVOKED_AND_COUNT(
                keys=[cache.make_key(revoked_key), cache.make_key(key), cache.make_key(mark_key)],
                args=[ttl],
                client=throttling.redis_client(),
            )
            throttling.user_count_prefetched(key=key, count=int(count))
    except Exception as exc:
        logger.warning("revocation list unreadable: %s", exc)
        raise RevocationUnavailable() from exc
    return bool(revoked) or (mark is not None and issued_ms < int(mark))


def token_revoke(*, jti: str, exp: int | float) -> None:
    """Put ``jti`` on the revocation list until the token would expire anyway."""
    ttl = max(1, int(exp - time.time()) + 1 + settings.JWT_LEEWAY_SECONDS)
    cache.set(REVOKED_KEY.format(jti=jti), 1, timeout=ttl)


def token_unrevoke(*, jti: str) -> None:
    """Take ``jti`` off the revocation list (a logout auth refused after it was stored)."""
    cache.delete(REVOKED_KEY.format(jti=jti))
