"""The gateway's signed user context, for tests that reach a service directly (requests auth).

``requests.get(url, auth=SignedContext("playlist", {"id": "1", "username": "ada"}))`` signs each
request for its own method, path, query and body, with the service's key derived from the
platform's ``INTERNAL_SECRET``, as the gateway does (``common.context``).
"""

from __future__ import annotations

import os
from typing import Any

import requests

from common import context


class SignedContext(requests.auth.AuthBase):
    def __init__(
        self,
        service: str,
        user: dict[str, Any],
        *,
        key: str | None = None,
        now: float | None = None,
        audience: str | None = None,
    ) -> None:
        self.service = service
        self.user = user
        self.key = key or context.derive_key(os.environ["INTERNAL_SECRET"], service)
        self.now = now
        self.audience = audience or service

    def headers(self, method: str, path: str, body: bytes = b"") -> dict[str, str]:
        target = context.Signed(audience=self.audience, method=method, path=path, body=body)
        return context.sign(self.user, key=self.key, target=target, now=self.now)

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        request.headers.update(
            self.headers(str(request.method), request.path_url, body)  # type: ignore[arg-type]
        )
        return request
