"""The browser session cookie as a DRF authenticator for the proxy (HTML requests only)."""

from __future__ import annotations

from typing import Any

from proxy.jwt_check import token_claims_get
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from browser.services import ACCESS_COOKIE, wants_html
from common.context import ContextUser
from common.log_context import user_id_var

CSRF_FAILED = "CSRF Failed: {reason}"


class BrowserCookieAuthentication(authentication.BaseAuthentication):
    """The access token from the ``gateway_access`` cookie, for ``Accept: text/html`` only.

    No cookie, or not an HTML request: not authenticated by this class (a JSON client must use
    ``Authorization: Bearer``). A cookie that is not a valid access token: 401. Unsafe methods
    need a valid CSRF token (form field or ``X-CSRFToken``), else 403.
    """

    def authenticate(self, request: Request) -> tuple[ContextUser, dict[str, Any]] | None:
        token = request._request.COOKIES.get(ACCESS_COOKIE)
        if not token or not wants_html(request._request):
            return None
        claims = token_claims_get(token=token)
        self.enforce_csrf(request)
        user = ContextUser(id=str(claims["user_id"]), username=str(claims.get("username", "")))
        user_id_var.set(user.id)
        return user, claims

    def enforce_csrf(self, request: Request) -> None:
        django_request = request._request
        if django_request.method in ("GET", "HEAD", "OPTIONS", "TRACE"):
            return
        # Read (size-limited upstream) and cache the body first: Django's check parses the
        # form from it and the proxy still forwards the same bytes afterwards.
        django_request.body  # noqa: B018

        def dummy_get_response(request: Any) -> None:  # pragma: no cover
            return None

        check = authentication.CSRFCheck(dummy_get_response)  # type: ignore[arg-type]
        check.process_request(django_request)
        reason = check.process_view(django_request, None, (), {})  # type: ignore[arg-type]
        if reason:
            raise exceptions.PermissionDenied(CSRF_FAILED.format(reason=reason))

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'
