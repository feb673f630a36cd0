"""Verified access tokens remembered per process: token -> its verified claims.

A bounded map (``TOKEN_CACHE_SIZE`` entries, oldest dropped first; 0 disables it) spares the RSA
check and JSON parsing when a client presents the same access token again, which is the common
case. ``proxy.jwt_check`` uses an entry only while the token's ``exp`` has not passed, and still
reads the revocation list on every request; ``proxy.jwks`` empties the map whenever it loads a
new key set, so a key the auth service withdraws stops working at the next refresh.
"""

from __future__ import annotations

import threading
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

_verified: dict[str, dict[str, Any]] = {}
_lock = threading.Lock()


def verified_get(token: str) -> dict[str, Any] | None:
    """The remembered claims of ``token``, or None."""
    return _verified.get(token)


def verified_remember(token: str, claims: dict[str, Any]) -> None:
    size = settings.TOKEN_CACHE_SIZE
    if size <= 0:
        return
    with _lock:
        while len(_verified) >= size:
            del _verified[next(iter(_verified))]  # oldest first
        _verified[token] = claims


def verified_clear() -> None:
    with _lock:
        _verified.clear()


@receiver(setting_changed)
def _on_setting_changed(*, setting: str, **kwargs: object) -> None:
    if setting.startswith("JWT_") or setting.startswith("JWKS_") or setting == "TOKEN_CACHE_SIZE":
        verified_clear()
