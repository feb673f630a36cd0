"""A test client that speaks to a service the way the gateway does (``common.context``).

Imported by the services' tests once Django is configured (``common.testing`` is not: the
``common`` suite imports it before its settings exist).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.handlers.wsgi import WSGIRequest
from django.test.client import FakePayload
from rest_framework.test import APIClient

from common import context


def context_headers(
    user: dict[str, Any], *, method: str, path: str, body: bytes = b"", **kwargs: Any
) -> dict[str, str]:
    """WSGI ``HTTP_X_USER*`` entries the gateway would send this service for one request."""
    signed = context.sign(
        user,
        key=kwargs.pop("key", None) or context.service_key(),
        target=context.Signed(
            audience=kwargs.pop("audience", None) or settings.SERVICE_NAME,
            method=method,
            path=path,
            body=body,
        ),
        **kwargs,
    )
    return {
        context.USER_META: signed[context.USER_HEADER],
        context.SIGNATURE_META: signed[context.SIGNATURE_HEADER],
    }


class ContextClient(APIClient):
    """DRF's test client that carries the gateway's signed context of one user: each request is
    signed for its own method, path and body, as the gateway does (``common.context``).

    ``ContextClient().as_user("42", "ada")``; ``as_user(None)`` stops signing.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.context_user: dict[str, Any] | None = None

    def as_user(self, user_id: str | None, username: str | None = None) -> ContextClient:
        self.context_user = (
            None if user_id is None else {"id": str(user_id), "username": username or "user"}
        )
        return self

    def request(self, **request: Any) -> Any:
        if self.context_user is not None and "HTTP_X_USER" not in request:
            wsgi = self._base_environ(**request)  # type: ignore[attr-defined]  # Django private
            length = int(wsgi.get("CONTENT_LENGTH") or 0)
            body = wsgi["wsgi.input"].read(length) if length else b""
            request["wsgi.input"] = FakePayload(body)
            path = WSGIRequest({**wsgi, "wsgi.input": FakePayload(b"")}).get_full_path()
            request.update(
                context_headers(
                    self.context_user, method=wsgi["REQUEST_METHOD"], path=path, body=body
                )
            )
        return super().request(**request)
