"""Signed user context: the gateway signs who the caller is, services verify it.

``X-User`` carries compact JSON of the caller; ``X-User-Signature`` is
``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<X-User>" keyed by INTERNAL_SECRET>``.
A service reached directly cannot be fooled by a forged header, and a captured header
stops working after ``MAX_AGE_SECONDS``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from common.log_context import user_id_var

USER_HEADER = "X-User"
SIGNATURE_HEADER = "X-User-Signature"
USER_META = "HTTP_X_USER"
SIGNATURE_META = "HTTP_X_USER_SIGNATURE"
MAX_AGE_SECONDS = 60
# Clocks of the gateway and a service may differ a little; a signature from the future is
# accepted within this margin only.
CLOCK_SKEW_SECONDS = 5
MAX_HEADER_LENGTH = 4096

ERROR_MISSING = "Missing user context."
ERROR_MALFORMED = "Malformed user context."
ERROR_BAD_SIGNATURE = "Invalid user context signature."
ERROR_EXPIRED = "Expired user context."


class ContextError(Exception):
    """The user context headers are missing, malformed, forged, tampered or expired."""


@dataclass(frozen=True)
class ContextUser:
    """The authenticated caller as the gateway vouched for it; no database row behind it."""

    id: str
    username: str
    claims: dict[str, Any] = field(default_factory=dict)

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False

    @property
    def pk(self) -> str:
        return self.id

    def __str__(self) -> str:
        return self.username


def _digest(secret: str, timestamp: int, value: str) -> str:
    message = f"{timestamp}.{value}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def encode_user(user: dict[str, Any]) -> str:
    """Compact, ASCII-only JSON (header-safe) with a stable key order."""
    return json.dumps(user, separators=(",", ":"), sort_keys=True, ensure_ascii=True)


def sign(user: dict[str, Any], *, secret: str, now: float | None = None) -> dict[str, str]:
    """Headers that carry ``user`` to a service: ``{"X-User": ..., "X-User-Signature": ...}``."""
    value = encode_user(user)
    timestamp = int(time.time() if now is None else now)
    signature = f"t={timestamp},v1={_digest(secret, timestamp, value)}"
    return {USER_HEADER: value, SIGNATURE_HEADER: signature}


def verify(
    value: str | None,
    signature: str | None,
    *,
    secret: str,
    max_age: int = MAX_AGE_SECONDS,
    now: float | None = None,
) -> dict[str, Any]:
    """Return the user dict carried by valid headers; raise ContextError otherwise.

    Whatever a client sends (non-ASCII or binary text, empty or huge values, non-strings)
    ends in ContextError, never another exception: a forged header is a 401, not a 500.
    """
    if not value or not signature:
        raise ContextError(ERROR_MISSING)
    if not isinstance(value, str) or not isinstance(signature, str):
        raise ContextError(ERROR_MALFORMED)
    if len(value) > MAX_HEADER_LENGTH or len(signature) > MAX_HEADER_LENGTH:
        raise ContextError(ERROR_MALFORMED)
    # The gateway sends ASCII only (encode_user); compare_digest raises TypeError on a
    # non-ASCII str, so anything else is refused before it gets there.
    if not value.isascii() or not signature.isascii():
        raise ContextError(ERROR_MALFORMED)
    try:
        parts = dict(item.split("=", 1) for item in signature.split(","))
        if not parts["t"].isdigit():  # int() would also take "+1", " 1 " or "1_0"
            raise ValueError(parts["t"])
        timestamp = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError) as exc:
        raise ContextError(ERROR_MALFORMED) from exc
    if not hmac.compare_digest(_digest(secret, timestamp, value).encode(), given.encode()):
        raise ContextError(ERROR_BAD_SIGNATURE)
    current = time.time() if now is None else now
    if current - timestamp > max_age or timestamp - current > CLOCK_SKEW_SECONDS:
        raise ContextError(ERROR_EXPIRED)
    try:
        user = json.loads(value)
    except ValueError as exc:
        raise ContextError(ERROR_MALFORMED) from exc
    if (
        not isinstance(user, dict)
        or not user.get("id")
        or not isinstance(user.get("username"), str)
    ):
        raise ContextError(ERROR_MALFORMED)
    return user


class SignedContextAuthentication(authentication.BaseAuthentication):
    """DRF authentication from the gateway's signed ``X-User`` header.

    No header at all: not authenticated (views needing a user answer 401).
    A header that is forged, tampered, malformed or expired: 401 at once.
    """

    def authenticate(self, request: Request) -> tuple[ContextUser, None] | None:
        value = request.META.get(USER_META)
        signature = request.META.get(SIGNATURE_META)
        if not value and not signature:
            return None
        try:
            data = verify(value, signature, secret=settings.INTERNAL_SECRET)
        except ContextError as exc:
            raise exceptions.AuthenticationFailed(str(exc)) from exc
        user = ContextUser(
            id=str(data["id"]),
            username=data["username"],
            claims={k: v for k, v in data.items() if k not in ("id", "username")},
        )
        user_id_var.set(user.id)
        return user, None

    def authenticate_header(self, request: Request) -> str:
        # A WWW-Authenticate value makes DRF answer 401 (not 403) when the context is missing.
        return 'Bearer realm="api"'
