"""Errors the gateway itself answers with, as declarative DRF exceptions."""

from __future__ import annotations

from rest_framework import exceptions, status

# One 413 for every service (body over MAX_BODY_BYTES), defined in common.
from common.errors import PAYLOAD_TOO_LARGE_DETAIL as PAYLOAD_TOO_LARGE
from common.errors import PayloadTooLarge

__all__ = ["PAYLOAD_TOO_LARGE", "PayloadTooLarge"]

UPSTREAM_UNAVAILABLE = "Upstream service temporarily unavailable, try again later."
UPSTREAM_UNREACHABLE = "Upstream service unreachable."
UPSTREAM_TIMEOUT = "Upstream service timed out."
UPSTREAM_ANSWER_TOO_LARGE = "Upstream answer too large."
TOKEN_MISSING = "Authentication credentials were not provided."
TOKEN_INVALID = "Invalid or expired token."
TOKEN_REVOKED = "Token has been revoked."
KEYS_UNAVAILABLE = "Token keys unavailable, try again later."
REVOCATION_UNAVAILABLE = "Token revocation list unavailable, try again later."
BAD_PATH = "Path with dot segments, encoded slashes or backslashes."


class UpstreamUnavailable(exceptions.APIException):
    """503: the upstream's circuit breaker is open; ``wait`` becomes ``Retry-After``."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = UPSTREAM_UNAVAILABLE
    default_code = "upstream_unavailable"

    def __init__(self, *, wait: int, detail: str | None = None) -> None:
        super().__init__(detail)
        self.wait = wait


class UpstreamUnreachable(exceptions.APIException):
    """502: the upstream refused or dropped the connection."""

    status_code = status.HTTP_502_BAD_GATEWAY
    default_detail = UPSTREAM_UNREACHABLE
    default_code = "upstream_unreachable"


class UpstreamTimeout(exceptions.APIException):
    """504: the upstream did not connect or answer within its timeout."""

    status_code = status.HTTP_504_GATEWAY_TIMEOUT
    default_detail = UPSTREAM_TIMEOUT
    default_code = "upstream_timeout"


class UpstreamAnswerTooLarge(exceptions.APIException):
    """502: the upstream's answer is over ``GATEWAY_MAX_UPSTREAM_BYTES`` (not passed on)."""

    status_code = status.HTTP_502_BAD_GATEWAY
    default_detail = UPSTREAM_ANSWER_TOO_LARGE
    default_code = "upstream_answer_too_large"

    def __init__(self, *, size: int | None, limit: int) -> None:
        super().__init__()
        self.size = size  # from Content-Length; None when it was only found out by reading
        self.limit = limit

    def __str__(self) -> str:
        size = f"{self.size} bytes" if self.size is not None else "more bytes"
        return f"upstream answer of {size} over the {self.limit}-byte limit"


class InvalidToken(exceptions.AuthenticationFailed):
    """401: the bearer token is malformed, forged, expired, of the wrong kind or revoked."""

    default_detail = TOKEN_INVALID
    default_code = "token_not_valid"


class KeysUnavailable(exceptions.APIException):
    """503: the auth service's JWKS cannot be fetched and no key is cached."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = KEYS_UNAVAILABLE
    default_code = "auth_keys_unavailable"

    def __init__(self, *, wait: int = 5) -> None:
        super().__init__()
        self.wait = wait


class RevocationUnavailable(exceptions.APIException):
    """503: the shared cache holding revoked tokens does not answer (fail closed)."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = REVOCATION_UNAVAILABLE
    default_code = "revocation_unavailable"

    def __init__(self, *, wait: int = 5) -> None:
        super().__init__()
        self.wait = wait


class BadPath(exceptions.APIException):
    """400: a proxied path that could leave its route's prefix upstream (``..``, ``%2f``...)."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = BAD_PATH
    default_code = "bad_path"
