"""The auth service's public keys (its JWKS), as PyJWT's ``PyJWKClient`` keeps them.

Fetched from ``JWKS_URL`` on first use, kept for ``JWKS_CACHE_SECONDS`` (300 s, auth's
``max-age``), refreshed at once for an unknown ``kid`` but at most once every
``JWKS_MIN_REFRESH_SECONDS`` per process, so tokens with random ``kid`` values cannot hammer the
auth service. A key auth withdraws (``rotate_jwt_key --withdraw-previous``) leaves the JWKS at
once, so the gateway refuses its tokens within ``JWKS_CACHE_SECONDS`` of the withdrawal.

``AuthKeys`` changes two things in ``PyJWKClient``: a set that cannot be refetched (auth down,
an error page, an empty set) keeps being served, so an auth outage does not log everyone out;
and every fetch attempt, failed and expiry ones included, is spaced by
``JWKS_MIN_REFRESH_SECONDS`` (``PyJWKClient``'s cooldown only spaces refreshes for an unknown
``kid`` after a successful fetch). Each newly loaded set empties ``proxy.verified_tokens``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from typing import Any

import jwt
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from proxy.exceptions import InvalidToken, KeysUnavailable
from proxy.verified_tokens import verified_clear

logger = logging.getLogger(__name__)

# What a failed fetch raises: urllib's errors are OSError, a body that is not JSON ValueError.
_FETCH_ERRORS = (jwt.PyJWKClientError, jwt.PyJWKSetError, OSError, ValueError)


class AuthKeys(jwt.PyJWKClient):
    """``PyJWKClient`` that serves its last good set when a refetch fails, and fetches at most
    once every ``min_refresh`` seconds (a failed attempt counts)."""

    def __init__(self, *, url: str, timeout: float, ttl: float, min_refresh: float) -> None:
        # PyJWKClient wants a positive lifespan; JWKS_CACHE_SECONDS=0 means "always stale".
        super().__init__(
            url, lifespan=max(ttl, 1e-9), timeout=timeout, cooldown_duration=min_refresh
        )
        self.min_refresh = min_refresh
        self._attempted_at = -math.inf
        self._last_good: jwt.PyJWKSet | None = None
        self._fetch_lock = threading.Lock()

    def get_jwk_set(self, refresh: bool = False) -> jwt.PyJWKSet:
        """The cached set while fresh (unless ``refresh``), else a fetched one; the last good
        set if the fetch fails or comes too soon after the previous attempt; ``KeysUnavailable``
        (503) when there has never been a good one."""
        assert self.jwk_set_cache is not None  # cache_jwk_set is always on
        cached = self.jwk_set_cache.get()
        if cached is not None and not refresh:
            return cached
        with self._fetch_lock:
            if time.monotonic() - self._attempted_at < self.min_refresh:
                # Someone just fetched (or failed to): don't hammer auth.
                cached = self.jwk_set_cache.get()
                return self._served(self._last_good if cached is None else cached)
            self._attempted_at = time.monotonic()
            try:
                keys = super().get_jwk_set(refresh=True)
            except _FETCH_ERRORS as exc:
                logger.warning("fetching JWKS from %s failed: %s", self.uri, exc)
                return self._served(self._last_good)
            self._last_good = keys
        verified_clear()
        logger.info("JWKS loaded from %s: %d key(s)", self.uri, len(keys.keys))
        return keys

    @staticmethod
    def _served(keys: jwt.PyJWKSet | None) -> jwt.PyJWKSet:
        if keys is None:
            raise KeysUnavailable()
        return keys

    def stale(self) -> bool:
        """True once the set is older than its lifetime (or was never loaded)."""
        assert self.jwk_set_cache is not None
        return self.jwk_set_cache.get() is None

    def refresh_if_stale(self) -> None:
        """Refetch a stale set (spaced like every fetch); a new set empties the verified-token
        map. A failure keeps the old set."""
        if self.stale():
            with contextlib.suppress(KeysUnavailable):
                self.get_jwk_set()

    def public_key(self, kid: str | None) -> Any:
        """The RSA public key for ``kid`` (without a ``kid``: the only key of the set);
        ``InvalidToken`` when auth does not know it."""
        try:
            if kid is None:
                keys = self.get_signing_keys()
                if len(keys) != 1:
                    raise InvalidToken()
                jwk = keys[0]
            else:
                jwk = self.get_signing_key(kid)
        except jwt.PyJWKClientError as exc:
            raise InvalidToken() from exc
        if jwk.key_type != "RSA":
            raise InvalidToken()
        return jwk.key


_lock = threading.Lock()
_auth_keys: AuthKeys | None = None


def auth_keys() -> AuthKeys:
    """The process-wide ``AuthKeys`` built from settings."""
    global _auth_keys
    if _auth_keys is None:
        with _lock:
            if _auth_keys is None:
                auth = settings.UPSTREAMS["auth"]
                _auth_keys = AuthKeys(
                    url=settings.JWKS_URL,
                    # urllib takes one timeout, for the connection and for each read.
                    timeout=max(float(auth["connect_timeout"]), float(auth["read_timeout"])),
                    ttl=settings.JWKS_CACHE_SECONDS,
                    min_refresh=settings.JWKS_MIN_REFRESH_SECONDS,
                )
    return _auth_keys


@receiver(setting_changed)
def _on_setting_changed(*, setting: str, **kwargs: object) -> None:
    global _auth_keys
    if setting in ("JWKS_URL", "UPSTREAMS", "JWKS_CACHE_SECONDS", "JWKS_MIN_REFRESH_SECONDS"):
        _auth_keys = None
