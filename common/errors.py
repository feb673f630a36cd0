"""One error shape for every service: ``{"detail": "...", "code": "..."}`` plus field errors."""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any

from django.http import HttpRequest, JsonResponse
from rest_framework import exceptions, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

VALIDATION_DETAIL = "Invalid input."
NOT_FOUND_DETAIL = "Not found."
SERVER_ERROR_DETAIL = "Internal server error."
PAYLOAD_TOO_LARGE_DETAIL = "Request body too large."
MALFORMED_BODY_DETAIL = "Malformed request body."

logger = logging.getLogger(__name__)


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = PAYLOAD_TOO_LARGE_DETAIL
    default_code = "payload_too_large"


def _first_code(codes: Any) -> str:
    """The first error code found in DRF's nested ``get_codes()`` structure."""
    if isinstance(codes, str):
        return codes
    if isinstance(codes, dict):
        for value in codes.values():
            return _first_code(value)
    if isinstance(codes, list) and codes:
        return _first_code(codes[0])
    return "error"


def _flatten(detail: Any) -> Any:
    """ErrorDetail structures as plain JSON (strings, lists, dicts)."""
    if isinstance(detail, dict):
        return {key: _flatten(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return [_flatten(value) for value in detail]
    return str(detail)


def error_body(exc: exceptions.APIException) -> dict[str, Any]:
    if isinstance(exc, exceptions.ValidationError):
        errors = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        return {
            "detail": VALIDATION_DETAIL,
            "code": _first_code(exc.get_codes()) if not isinstance(exc.detail, dict) else "invalid",
            "errors": _flatten(errors),
        }
    detail = exc.detail
    if isinstance(detail, dict) and "detail" in detail:
        # simplejwt and others raise with a dict detail: keep its message and code.
        return {
            "detail": str(detail["detail"]),
            "code": str(detail.get("code", _first_code(exc.get_codes()))),
        }
    if isinstance(detail, (list, dict)):
        return {
            "detail": str(exc.default_detail),
            "code": _first_code(exc.get_codes()),
            "errors": _flatten(detail),
        }
    return {"detail": str(detail), "code": _first_code(exc.get_codes())}


_PARSE_CODE = getattr(Request, "_parse").__code__  # noqa: B009  (private: not in the stubs)


def raised_while_parsing(exc: BaseException) -> bool:
    """True when ``exc`` escaped from DRF parsing the request body (``Request._parse``)."""
    tb: TracebackType | None = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code is _PARSE_CODE:
            return True
        tb = tb.tb_next
    return False


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF ``EXCEPTION_HANDLER``: DRF's own handling, then the common JSON shape.

    Last resort for client input: any exception a parser lets escape while reading the body
    (``RecursionError``, ``UnicodeDecodeError``, ...) is the client's malformed body, a 400,
    never a 500. Exceptions raised anywhere else stay server errors.
    """
    if not isinstance(exc, exceptions.APIException) and raised_while_parsing(exc):
        logger.warning(
            "request body broke the parser: %s", type(exc).__name__, extra={"error": str(exc)[:200]}
        )
        exc = exceptions.ParseError(MALFORMED_BODY_DETAIL)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.APIException):
        response.data = error_body(exc)
    elif isinstance(response.data, dict) and "detail" in response.data:
        response.data = {"detail": str(response.data["detail"]), "code": "error"}
    return response


def json_404(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """``handler404`` for URLs no view matches."""
    return JsonResponse({"detail": NOT_FOUND_DETAIL, "code": "not_found"}, status=404)


def json_500(request: HttpRequest) -> JsonResponse:
    """``handler500``: no HTML traceback page, the same JSON shape."""
    return JsonResponse({"detail": SERVER_ERROR_DETAIL, "code": "server_error"}, status=500)


def json_400(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse({"detail": "Bad request.", "code": "bad_request"}, status=400)


def json_403(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse({"detail": "Permission denied.", "code": "permission_denied"}, status=403)
