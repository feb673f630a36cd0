"""Ending every session of a user at once: the per-user "issued before" mark.

Access tokens are stateless JWTs, so "log out everywhere" (``POST /api/auth/logout-all``), a
password change (``PATCH /api/auth/me`` with a new ``password``) and an account deletion
(``DELETE /api/auth/me``) must reach every access token of the user, on every device, not only
the one presented. Before the gateway forwards one of those requests it stores, in Redis, the
time now (ms) as the user's mark: every token issued before it (``iat_ms``, see
``proxy.jwt_check``) is refused from then on (401 ``token_revoked``), in every gateway worker and
replica. Auth revokes the user's refresh tokens in the same request, so no new access token
can be minted from an old session; a new login after the mark works.

As for a single logout (``proxy.views``): if Redis cannot store the mark, auth is not called
(503 ``revocation_unavailable``, nothing changed, the client can retry); if auth refuses the
request (a wrong current password, say) the mark is withdrawn, unless a later one replaced it;
if auth timed out the mark stays (auth may have done it). The mark lives as long as the
presented access token's lifetime (all access tokens share it): after that every token issued
before it has expired anyway.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any
from urllib.parse import parse_qs

from django.conf import settings
from django.core.cache import cache
from redis.commands.core import Script

from common.parsers import json_depth_exceeds
from proxy import throttling
from proxy.exceptions import RevocationUnavailable
from proxy.revocation import SESSIONS_KEY

logger = logging.getLogger(__name__)

# Requests that end every session of the caller (PATCH only when it sets a new password).
ENDING_ROUTES = frozenset({("POST", "/api/auth/logout-all"), ("DELETE", "/api/auth/me")})
PASSWORD_CHANGE = ("PATCH", "/api/auth/me")
_BODY_MAX_DEPTH = 32

# Raise the mark to ARGV[1] (never lower it) for ARGV[2] seconds; returns the previous value
# (or false) and the mark now in force.
_RAISE = Script(
    None,
    b"""
local previous = redis.call('GET', KEYS[1])
if previous and tonumber(previous) >= tonumber(ARGV[1]) then return {previous, previous} end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return {previous, ARGV[1]}
""",
)
# Put back ARGV[2] (or nothing) if the mark is still ARGV[1], the one this request set.
_WITHDRAW = Script(
    None,
    b"""
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
end
return 1
""",
)


def ends_sessions(*, method: str, path: str, body: bytes, content_type: str = "") -> bool:
    """True for a request that, once auth accepts it, ends every session of the caller."""
    if (method, path) in ENDING_ROUTES:
        return True
    return (method, path) == PASSWORD_CHANGE and _may_set_password(body, content_type)


def _may_set_password(body: bytes, content_type: str) -> bool:
    """False only for a body that certainly sets no new password (auth takes JSON, form and
    multipart bodies); anything else is marked, and the mark withdrawn if auth refuses it."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/x-www-form-urlencoded":
        try:
            return "password" in parse_qs(body.decode("latin-1"), keep_blank_values=True)
        except ValueError:
            return True
    if media not in ("", "application/json") and not media.endswith("+json"):
        return True  # multipart and the rest: not parsed here
    try:
        text = body.decode()
        if json_depth_exceeds(text, _BODY_MAX_DEPTH):
            return False
        data = json.loads(text)
    except (ValueError, RecursionError):
        return False  # auth answers 400 to such a body: nothing to end
    return isinstance(data, dict) and data.get("password") is not None


class Mark:
    """The mark one request set, to withdraw it if auth refuses the request."""

    def __init__(self, *, user_id: str, value: int, previous: int | None) -> None:
        self.user_id = user_id
        self.value = value
        self.previous = previous


def sessions_end(*, claims: dict[str, Any]) -> Mark:
    """Refuse from now on every token of the caller issued before now; 503
    ``revocation_unavailable`` if Redis cannot store that."""
    user_id = str(claims["user_id"])
    now_ms = int(time.time() * 1000)
    lifetime = max(0, int(claims["exp"]) - int(claims["iat"]))
    ttl = lifetime + settings.JWT_LEEWAY_SECONDS + 60
    try:
        previous, _ = _RAISE(
            keys=[cache.make_key(SESSIONS_KEY.format(user_id=user_id))],
            args=[now_ms, ttl],
            client=throttling.redis_client(),
        )
    except Exception as exc:
        logger.warning("sessions mark not stored, request refused: %s", exc)
        raise RevocationUnavailable() from exc
    logger.info("every session of the user ends", extra={"user_id": user_id})
    return Mark(user_id=user_id, value=now_ms, previous=None if previous is None else int(previous))


def sessions_end_withdraw(mark: Mark) -> None:
    """Auth refused (or never got) the request: the user's sessions are valid again."""
    try:
        _WITHDRAW(
            keys=[cache.make_key(SESSIONS_KEY.format(user_id=mark.user_id))],
            args=[mark.value, "" if mark.previous is None else mark.previous],
            client=throttling.redis_client(),
        )
    except Exception:
        # Fails safe: the user's tokens stay refused; signing in again works.
        logger.exception("could not withdraw the sessions mark of user %s", mark.user_id)
