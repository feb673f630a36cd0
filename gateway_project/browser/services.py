"""Browser login/logout through the auth service, cookies, and the HTML pages' CSRF tokens.

See the package docstring for the design.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.utils.html import escape
from django.utils.http import url_has_allowed_host_and_scheme
from proxy.exceptions import RevocationUnavailable
from proxy.jwt_check import token_claims_get
from proxy.revocation import token_revoke
from proxy.services import proxy_forward, request_headers_build
from rest_framework.exceptions import APIException

logger = logging.getLogger(__name__)

ACCESS_COOKIE = "gateway_access"
ACCESS_COOKIE_PATH = "/api"
REFRESH_COOKIE = "gateway_refresh"
REFRESH_COOKIE_PATH = "/api/browser"
BROWSER_COOKIES = (ACCESS_COOKIE, REFRESH_COOKIE)
DEFAULT_NEXT = "/api/playlists"

LOGIN_FAILED = "Invalid username or password."
LOGIN_THROTTLED = "Too many sign-in attempts; try again later."
AUTH_UNAVAILABLE = "The sign-in service is unavailable; try again later."


class LoginRefused(Exception):
    """The auth service did not sign the user in; ``status`` is the page's HTTP status."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def wants_html(request: HttpRequest) -> bool:
    """True for browser page loads and the browsable API's own forms (``Accept: text/html``)."""
    return "text/html" in request.META.get("HTTP_ACCEPT", "").lower()


def safe_next(*, request: HttpRequest, target: str | None) -> str:
    """``target`` when it is a local path on this host, else the default page."""
    if (
        target
        and target.startswith("/")
        and not target.startswith("//")
        and "\\" not in target
        and url_has_allowed_host_and_scheme(
            target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        )
    ):
        return target
    return DEFAULT_NEXT


def _auth_headers(*, request: HttpRequest) -> dict[str, str]:
    """Request id and X-Forwarded-* (auth throttles sign-ins per client IP)."""
    headers = request_headers_build(request=request)
    for name in list(headers):
        if name.lower() in ("cookie", "content-type", "accept", "x-csrftoken", "referer", "origin"):
            del headers[name]
    headers["Content-Type"] = "application/json"
    headers["Accept"] = "application/json"
    return headers


def browser_login(*, request: HttpRequest, username: str, password: str) -> dict[str, Any]:
    """The auth service's token pair for these credentials, the access token verified.

    Returns ``{"token", "refresh", "claims"}``; raises ``LoginRefused`` otherwise.
    """
    try:
        answer = proxy_forward(
            upstream_name="auth",
            method="POST",
            path="/api/auth/login",
            headers=_auth_headers(request=request),
            body=json.dumps({"username": username, "password": password}).encode(),
        )
    except APIException as exc:  # breaker open, unreachable, timed out
        raise LoginRefused(AUTH_UNAVAILABLE, status=503) from exc
    if answer.status == 429:
        raise LoginRefused(LOGIN_THROTTLED, status=429)
    if answer.status >= 500:
        raise LoginRefused(AUTH_UNAVAILABLE, status=503)
    if answer.status != 200:
        raise LoginRefused(LOGIN_FAILED, status=200)
    try:
        pair = json.loads(answer.body)
        token, refresh = str(pair["token"]), str(pair["refresh"])
        claims = token_claims_get(token=token)
    except (ValueError, KeyError, TypeError, APIException) as exc:
        logger.warning("auth's login answer was unusable: %s", exc)
        raise LoginRefused(AUTH_UNAVAILABLE, status=503) from exc
    return {"token": token, "refresh": refresh, "claims": claims}


def _secure(request: HttpRequest) -> bool:
    return bool(settings.BROWSER_COOKIE_SECURE or request.is_secure())


def cookies_set(
    *, request: HttpRequest, response: HttpResponse, token: str, refresh: str, exp: float
) -> None:
    """The session cookies (flags in the package docstring); they live as long as the token."""
    max_age = max(0, int(exp - time.time()))
    secure = _secure(request)
    response.set_cookie(
        ACCESS_COOKIE,
        token,
        max_age=max_age,
        path=ACCESS_COOKIE_PATH,
        secure=secure,
        httponly=True,
        samesite="Lax",
    )
    response.set_cookie(
        REFRESH_COOKIE,
        refresh,
        max_age=max_age,
        path=REFRESH_COOKIE_PATH,
        secure=secure,
        httponly=True,
        samesite="Strict",
    )


def cookies_clear(*, response: HttpResponse) -> None:
    response.delete_cookie(ACCESS_COOKIE, path=ACCESS_COOKIE_PATH, samesite="Lax")
    response.delete_cookie(REFRESH_COOKIE, path=REFRESH_COOKIE_PATH, samesite="Strict")


def browser_logout(*, request: HttpRequest) -> None:
    """Revoke the session's access token (gateway) and refresh token (auth).

    The revocation is stored first: if Redis cannot take it, ``RevocationUnavailable`` (503)
    and auth is not called, so the browser keeps its session rather than being shown as signed
    out while its access token still works. Auth being down or refusing is only logged.
    """
    token = request.COOKIES.get(ACCESS_COOKIE)
    if not token:
        return
    try:
        claims = token_claims_get(token=token)
    except RevocationUnavailable:
        raise
    except APIException:
        return  # expired, revoked or unverifiable: nothing left that could be used
    try:
        token_revoke(jti=claims["jti"], exp=claims["exp"])
    except Exception as exc:
        logger.warning("revocation not stored, browser logout refused: %s", exc)
        raise RevocationUnavailable() from exc
    refresh = request.COOKIES.get(REFRESH_COOKIE)
    if refresh:
        user = {"id": str(claims["user_id"]), "username": str(claims.get("username", ""))}
        try:
            answer = proxy_forward(
                upstream_name="auth",
                method="POST",
                path="/api/auth/logout",
                headers=_auth_headers(request=request),
                body=json.dumps({"refresh": refresh}).encode(),
                user=user,
            )
            if answer.status >= 300:
                logger.warning("auth refused the browser logout: %s", answer.status)
        except APIException as exc:
            logger.warning("auth unavailable during browser logout: %s", exc)


def forwarded_headers_strip(*, headers: dict[str, str], session: bool) -> None:
    """For a cookie session, remove the CSRF header and the conditional-request headers (see
    ``page_adapt``) from headers going upstream. Cookies never go upstream at all
    (``proxy.services``)."""
    if not session:
        return
    for name in list(headers):
        if name.lower() in ("x-csrftoken", "if-none-match", "if-modified-since"):
            del headers[name]


_FIELD_TOKEN = re.compile(rb'(name="csrfmiddlewaretoken" value=")[^"]*(")')
_SCRIPT_TOKEN = re.compile(rb'("csrfToken": ")[^"]*(")')
NAVBAR = b'<ul class="nav navbar-nav pull-right">'
LOGOUT_SNIPPET = (
    '<li><form id="gateway-logout" method="post" action="{action}" style="display:inline">'
    '<input type="hidden" name="csrfmiddlewaretoken" value="{token}">'
    '<input type="hidden" name="next" value="{next}">'
    '<button type="submit" id="gateway-logout-button" class="btn btn-link navbar-btn" '
    'style="color:#fff">Log out</button></form></li>'
)


def page_adapt(*, request: HttpRequest, response: HttpResponse, logout_url: str) -> HttpResponse:
    """A service's HTML page for a cookie session: the gateway's CSRF token, a logout button."""
    content_type = response.get("Content-Type", "")
    if not content_type.lower().startswith("text/html") or response.get("Content-Encoding"):
        return response
    token = get_token(request).encode()
    body = _FIELD_TOKEN.sub(lambda m: m.group(1) + token + m.group(2), response.content)
    body = _SCRIPT_TOKEN.sub(lambda m: m.group(1) + token + m.group(2), body)
    snippet = LOGOUT_SNIPPET.format(
        action=escape(logout_url),
        token=token.decode(),
        next=escape(request.get_full_path()),
    ).encode()
    body = body.replace(NAVBAR, NAVBAR + snippet, 1)
    response.content = body
    # The page now carries this session's CSRF token: never cached, never revalidated (a 304
    # would bring back a copy whose token a later login has rotated away).
    for name in ("ETag", "Last-Modified"):
        if name in response:
            del response[name]
    response["Cache-Control"] = "private, no-store"
    return response
