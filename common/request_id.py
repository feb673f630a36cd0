"""X-Request-ID: keep a sane caller value or make one, echo it, expose it to logs."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from common.errors import PAYLOAD_TOO_LARGE_DETAIL
from common.log_context import event_id_var, request_id_var, user_id_var

HEADER = "X-Request-ID"
META_KEY = "HTTP_X_REQUEST_ID"
MAX_LENGTH = 128
# RFC 7230 token characters: safe to echo in a header and to write in a log line.
_TOKEN_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")


def is_valid_request_id(value: str | None) -> bool:
    """True for a non-empty value of at most 128 token characters."""
    return value is not None and 0 < len(value) <= MAX_LENGTH and bool(_TOKEN_RE.match(value))


def new_request_id() -> str:
    return uuid.uuid4().hex


class RequestIDMiddleware:
    """Sets ``request.request_id`` and the log context; echoes the id on the response."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.META.get(META_KEY)
        request_id = new_request_id()
        if isinstance(incoming, str) and is_valid_request_id(incoming):
            request_id = incoming
        request.request_id = request_id  # type: ignore[attr-defined]
        request.META[META_KEY] = request_id
        # Set, not reset afterwards: Django logs 4xx/5xx answers after the middleware chain
        # returned, and those lines must carry the id too. The next request of this thread
        # overwrites all three (user_id is set again by the authentication class).
        request_id_var.set(request_id)
        user_id_var.set(None)
        event_id_var.set(None)
        response = self.get_response(request)
        response[HEADER] = request_id
        return response


class BodySizeLimitMiddleware:
    """413 JSON for a body over DATA_UPLOAD_MAX_MEMORY_SIZE (DRF's parsers never check it)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return JsonResponse(
                {"detail": "Invalid Content-Length.", "code": "bad_request"}, status=400
            )
        if limit is not None and length > limit:
            return JsonResponse(
                {"detail": PAYLOAD_TOO_LARGE_DETAIL, "code": "payload_too_large"}, status=413
            )
        return self.get_response(request)
