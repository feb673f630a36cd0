"""Signed user context: the gateway signs who the caller is and what it asked, services verify it.

``X-User`` carries compact JSON of the caller. ``X-User-Signature`` is
``t=<unix seconds>,n=<nonce>,v2=<hex HMAC-SHA256>`` over, one per line: ``t``, the nonce, the
audience (the service the request is for), the method, the path with its query string as sent,
the SHA-256 of the body, and the ``X-User`` value. So a captured context is good for one request
only: on another path, method, body or service it is refused (401), after ``MAX_AGE_SECONDS`` it
is refused, and a write (POST, PUT, PATCH, DELETE) replayed with the same nonce is refused by
the service's nonce list (the Django cache, for ``MAX_AGE_SECONDS``).

Keys: each service has its own. By default it is derived from ``INTERNAL_SECRET`` and the
service's name (:func:`derive_key`), so one secret still configures a single machine; a service
given ``CONTEXT_KEY`` uses that instead and needs no ``INTERNAL_SECRET`` at all, and the gateway
then reads it as ``<SERVICE>_CONTEXT_KEY`` (``PLAYLIST_CONTEXT_KEY``...). With separate keys a
compromised service can forge contexts for nobody else. The gateway forwards no
``Authorization`` header and no cookies (``proxy.services``): no service sees a bearer token.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.cache import cache
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from common.log_context import user_id_var

logger = logging.getLogger(__name__)

USER_HEADER = "X-User"
SIGNATURE_HEADER = "X-User-Signature"
USER_META = "HTTP_X_USER"
SIGNATURE_META = "HTTP_X_USER_SIGNATURE"
MAX_AGE_SECONDS = 60
# Clocks of the gateway and a service may differ a little; a signature from the future is
# accepted within this margin only.
CLOCK_SKEW_SECONDS = 5
MAX_HEADER_LENGTH = 4096
NONCE_BYTES = 16
NONCE_KEY = "context:nonce:{nonce}"
# Methods whose replay changes something: their nonce is remembered and refused a second time.
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_KEY_LABEL = "musicstream user context v2:"

ERROR_MISSING = "Missing user context."
ERROR_MALFORMED = "Malformed user context."
ERROR_BAD_SIGNATURE = "Invalid user context signature."
ERROR_EXPIRED = "Expired user context."
ERROR_REPLAYED = "Replayed user context."


class ContextError(Exception):
    """The user context headers are missing, malformed, forged, tampered, expired or replayed."""


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


@dataclass(frozen=True)
class Signed:
    """What a signature covers besides the user: where the request goes and what it carries."""

    audience: str
    method: str
    path: str
    body: bytes = b""


def derive_key(secret: str, service: str) -> str:
    """The context key of ``service`` derived from the shared ``INTERNAL_SECRET``."""
    return hmac.new(secret.encode(), (_KEY_LABEL + service).encode(), hashlib.sha256).hexdigest()


def service_key() -> str:
    """This service's own context key (settings ``CONTEXT_KEY``, else derived)."""
    return str(getattr(settings, "CONTEXT_KEY", "") or "") or derive_key(
        settings.INTERNAL_SECRET, settings.SERVICE_NAME
    )


def _digest(key: str, timestamp: int, nonce: str, target: Signed, value: str) -> str:
    message = "\n".join(
        (
            str(timestamp),
            nonce,
            target.audience,
            target.method.upper(),
            target.path,
            hashlib.sha256(target.body).hexdigest(),
            value,
        )
    )
    return hmac.new(key.encode(), message.encode(), hashlib.sha256).hexdigest()


def encode_user(user: dict[str, Any]) -> str:
    """Compact, ASCII-only JSON (header-safe) with a stable key order."""
    return json.dumps(user, separators=(",", ":"), sort_keys=True, ensure_ascii=True)


def sign(
    user: dict[str, Any],
    *,
    key: str,
    target: Signed,
    now: float | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """Headers carrying ``user`` to a service for one request: X-User and X-User-Signature."""
    value = encode_user(user)
    timestamp = int(time.time() if now is None else now)
    nonce = nonce or secrets.token_hex(NONCE_BYTES)
    digest = _digest(key, timestamp, nonce, target, value)
    return {USER_HEADER: value, SIGNATURE_HEADER: f"t={timestamp},n={nonce},v2={digest}"}


def verify(
    value: str | None,
    signature: str | None,
    *,
    key: str,
    target: Signed,
    max_age: int = MAX_AGE_SECONDS,
    now: float | None = None,
) -> tuple[dict[str, Any], str]:
    """The user dict carried by valid headers and the signature's nonce; ContextError otherwise.

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
        nonce = parts["n"]
        given = parts["v2"]
    except (KeyError, ValueError) as exc:
        raise ContextError(ERROR_MALFORMED) from exc
    if not nonce or not nonce.isalnum():
        raise ContextError(ERROR_MALFORMED)
    expected = _digest(key, timestamp, nonce, target, value)
    if not hmac.compare_digest(expected.encode(), given.encode()):
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
    return user, nonce


def nonce_claim(nonce: str) -> None:
    """Remember a write's nonce for as long as its signature is valid; ContextError if it was
    seen before. A cache that does not answer lets the request through (logged): the signature
    still pins it to one path, method, body and minute."""
    try:
        fresh = cache.add(NONCE_KEY.format(nonce=nonce), 1, MAX_AGE_SECONDS + CLOCK_SKEW_SECONDS)
    except Exception as exc:
        logger.warning("context nonce not checked, cache unavailable: %s", exc)
        return
    if not fresh:
        raise ContextError(ERROR_REPLAYED)


def request_target(request: Request) -> Signed:
    """What the gateway signed for this request, as the service received it."""
    django_request = request._request
    return Signed(
        audience=settings.SERVICE_NAME,
        method=django_request.method or "",
        path=django_request.get_full_path(),
        body=django_request.body,
    )


class SignedContextAuthentication(authentication.BaseAuthentication):
    """DRF authentication from the gateway's signed ``X-User`` header.

    No header at all: not authenticated (views needing a user answer 401).
    A header that is forged, tampered, malformed, expired, replayed or signed for another
    request: 401 at once.
    """

    def authenticate(self, request: Request) -> tuple[ContextUser, None] | None:
        value = request.META.get(USER_META)
        signature = request.META.get(SIGNATURE_META)
        if not value and not signature:
            return None
        try:
            data, nonce = verify(
                value, signature, key=service_key(), target=request_target(request)
            )
            if request.method in UNSAFE_METHODS:
                nonce_claim(nonce)
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
