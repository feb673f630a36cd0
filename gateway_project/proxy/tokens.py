"""Access-token checks at the gateway: RS256 signature (auth's JWKS), claims, revocation.

Revocation design: logging out (``POST /api/auth/logout``) or deleting the account
(``DELETE /api/auth/me``) must make the caller's access token stop working at once, although access
tokens are stateless JWTs. Before the gateway forwards one of those requests, it writes the
token's ``jti`` into the Django cache (Redis, so every gateway worker and replica sees it) with a
lifetime equal to the token's remaining validity, and takes it off again unless auth answers 2xx
(or times out: auth may have ended the session). If the write fails, auth is not called at all
(503 ``revocation_unavailable``, the client keeps its session and can retry), so no client is
told it logged out while its access token still works. After ``exp``
the signature check refuses the token anyway, so the list never grows beyond the tokens still
alive. Every token check looks the ``jti`` up (one cache read). If the cache does not answer, the
check fails closed (503): a logged-out token must never work again because Redis blinked. The
refresh token is blacklisted by the auth service itself (simplejwt), so a revoked session cannot
mint new access tokens either. Only the presented access token is revoked; other devices' access
tokens of the same user expire on their own within the access lifetime (15 min by default).

JWKS: fetched from ``JWKS_URL`` on first use, kept for ``JWKS_CACHE_SECONDS`` (300 s, auth's
``max-age``; a stale set is kept when a refresh fails), refreshed at once for an unknown ``kid``
but at most once every ``JWKS_MIN_REFRESH_SECONDS`` per process, so tokens with random ``kid``
values cannot hammer the auth service. A key auth withdraws (``rotate_jwt_key
--withdraw-previous``) leaves the JWKS at once, so the gateway refuses its tokens within
``JWKS_CACHE_SECONDS`` of the withdrawal.

Verified tokens: a bounded per-process map from token to its verified claims
(``TOKEN_CACHE_SIZE`` entries) spares the RSA check and JSON parsing when a client presents the
same access token again, which is the common case. An entry is only used while the token's
``exp`` has not passed, the revocation list is still read on every request, and the map is
emptied whenever the JWKS is (re)loaded, so a key the auth service withdraws stops working at
the next refresh. A remembered token still triggers that refresh once the set is older than
``JWKS_CACHE_SECONDS`` (a client replaying one token must not keep a stale set alive).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from typing import Any

import jwt
import requests
from django.conf import settings
from django.core.cache import cache
from django.core.signals import setting_changed
from django.dispatch import receiver
from redis.commands.core import Script

from common.parsers import json_depth_exceeds
from proxy import metrics, throttling
from proxy.exceptions import TOKEN_REVOKED, InvalidToken, KeysUnavailable, RevocationUnavailable

logger = logging.getLogger(__name__)

ALGORITHM = "RS256"
ACCESS = "access"
REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "jti", "token_type", "user_id"]
REVOKED_KEY = "gateway:revoked:{jti}"
# Per user: tokens issued before this time (ms since the epoch) are refused. Set by "log out
# everywhere", a password change and an account deletion (proxy.sessions).
SESSIONS_KEY = "gateway:sessions-after:{user_id}"
# Tokens carry their issue time in ms (auth's ``iat_ms``); ``iat`` (seconds) for older ones.
ISSUED_MS_CLAIM = "iat_ms"
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


class KeySet:
    """The auth service's public keys by ``kid``, fetched and refreshed as described above."""

    def __init__(
        self, *, url: str, timeout: tuple[float, float], ttl: float, min_refresh: float
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.ttl = ttl
        self.min_refresh = min_refresh
        self._keys: dict[str | None, Any] = {}
        self._fetched_at = 0.0
        self._attempted_at = -float("inf")
        self._lock = threading.Lock()
        self.fetches = 0

    def _fetch(self) -> None:
        self._attempted_at = time.monotonic()
        self.fetches += 1
        try:
            response = requests.get(self.url, timeout=self.timeout)
            response.raise_for_status()
            keyset = jwt.PyJWKSet.from_dict(response.json())
        except (requests.RequestException, ValueError, jwt.PyJWKSetError) as exc:
            logger.warning("fetching JWKS from %s failed: %s", self.url, exc)
            return
        keys: dict[str | None, Any] = {}
        for key in keyset.keys:
            if key.key_type == "RSA" and key.public_key_use in (None, "sig"):
                keys[key.key_id] = key.key
        self._keys = keys
        self._fetched_at = time.monotonic()
        verified_clear()
        logger.info("JWKS loaded from %s: %d key(s)", self.url, len(keys))

    def _refresh(self, *, force: bool) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._attempted_at < self.min_refresh:
                return  # someone just fetched (or failed to): don't hammer auth
            if not force and self._keys and now - self._fetched_at < self.ttl:
                return
            self._fetch()

    def stale(self) -> bool:
        """True once the set is older than its lifetime (or was never loaded)."""
        return not self._keys or time.monotonic() - self._fetched_at >= self.ttl

    def refresh_if_stale(self) -> None:
        """Refetch a stale set (rate-limited like every fetch); a successful fetch empties the
        verified-token map."""
        if self.stale():
            self._refresh(force=False)

    def get(self, kid: str | None) -> Any:
        """The public key for ``kid``; ``InvalidToken`` when auth does not know it."""
        self.refresh_if_stale()
        key = self._lookup(kid)
        if key is None and self._keys:
            self._refresh(force=True)
            key = self._lookup(kid)
        if key is None:
            if not self._keys:
                raise KeysUnavailable()
            raise InvalidToken()
        return key

    def _lookup(self, kid: str | None) -> Any:
        keys = self._keys
        if kid is None and len(keys) == 1:
            return next(iter(keys.values()))
        return keys.get(kid)


_keyset_lock = threading.Lock()
_keyset: KeySet | None = None


def keyset() -> KeySet:
    """The process-wide ``KeySet`` built from settings."""
    global _keyset
    if _keyset is None:
        with _keyset_lock:
            if _keyset is None:
                auth = settings.UPSTREAMS["auth"]
                _keyset = KeySet(
                    url=settings.JWKS_URL,
                    timeout=(float(auth["connect_timeout"]), float(auth["read_timeout"])),
                    ttl=settings.JWKS_CACHE_SECONDS,
                    min_refresh=settings.JWKS_MIN_REFRESH_SECONDS,
                )
    return _keyset


@receiver(setting_changed)
def _on_setting_changed(*, setting: str, **kwargs: object) -> None:
    global _keyset
    if setting in ("JWKS_URL", "UPSTREAMS", "JWKS_CACHE_SECONDS", "JWKS_MIN_REFRESH_SECONDS"):
        _keyset = None
    if setting.startswith("JWT_") or setting.startswith("JWKS_") or setting == "TOKEN_CACHE_SIZE":
        verified_clear()


_verified: dict[str, dict[str, Any]] = {}
_verified_lock = threading.Lock()


def verified_clear() -> None:
    with _verified_lock:
        _verified.clear()


def _remember(token: str, claims: dict[str, Any]) -> None:
    size = settings.TOKEN_CACHE_SIZE
    if size <= 0:
        return
    with _verified_lock:
        while len(_verified) >= size:
            del _verified[next(iter(_verified))]  # oldest first
        _verified[token] = claims


_HEADER_MAX_DEPTH = 4


def _header(token: str) -> dict[str, Any]:
    """The JOSE header, parsed cheaply (``jwt.decode`` validates the whole token after)."""
    segment = token.split(".", 1)[0]
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)).decode()
        # A JOSE header is one flat object: nested JSON would only make json.loads recurse
        # (a few KB of brackets raise RecursionError, a 500).
        if json_depth_exceeds(raw, _HEADER_MAX_DEPTH):
            raise InvalidToken()
        header = json.loads(raw)
    except (ValueError, TypeError, RecursionError) as exc:
        raise InvalidToken() from exc
    if not isinstance(header, dict):
        raise InvalidToken()
    return header


def token_claims_get(*, token: str) -> dict[str, Any]:
    """The verified claims of an access token; ``InvalidToken`` (401) for anything else."""
    claims = _verified.get(token)
    if claims is not None:
        keys = keyset()
        if keys.stale():
            keys.refresh_if_stale()  # a new set empties the map: the token is checked again
            claims = _verified.get(token)
    if claims is None:
        claims = _token_verify(token)
        _remember(token, claims)
    elif claims["exp"] + settings.JWT_LEEWAY_SECONDS < time.time():
        raise InvalidToken()
    if token_is_revoked(
        jti=claims["jti"], user_id=str(claims["user_id"]), issued_ms=issued_ms(claims)
    ):
        metrics.revoked_token_hits.inc()
        raise InvalidToken(TOKEN_REVOKED, code="token_revoked")
    return claims


def issued_ms(claims: dict[str, Any]) -> int:
    """When the token was issued, in ms: ``iat_ms``, else ``iat`` (whole seconds)."""
    value = claims.get(ISSUED_MS_CLAIM)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return int(claims["iat"]) * 1000


def _token_verify(token: str) -> dict[str, Any]:
    header = _header(token)
    # Only RS256: refuses "none" and HS256-signed-with-the-public-key before touching keys.
    if header.get("alg") != ALGORITHM:
        raise InvalidToken()
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise InvalidToken()
    key = keyset().get(kid)
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=settings.JWT_AUDIENCE,
            issuer=settings.JWT_ISSUER,
            leeway=settings.JWT_LEEWAY_SECONDS,
            options={"require": REQUIRED_CLAIMS},
        )
    except jwt.PyJWTError as exc:
        raise InvalidToken() from exc
    if claims.get("token_type") != ACCESS:
        raise InvalidToken()
    if not isinstance(claims.get("jti"), str) or not claims.get("user_id"):
        raise InvalidToken()
    if not isinstance(claims.get("exp"), int | float):
        raise InvalidToken()
    return claims


def token_is_revoked(*, jti: str, user_id: str | None = None, issued_ms: int = 0) -> bool:
    """True when ``jti`` is on the revocation list or, with a ``user_id``, the token was issued
    (``issued_ms``) before that user's sessions mark; 503 if Redis cannot be read.

    With a ``user_id`` (and user throttling on), the same round trip also counts the request in
    the caller's rate-limit window (``proxy.throttling.user_window``), which the user throttle
    then uses instead of a round trip of its own (docs/performance.md).
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
