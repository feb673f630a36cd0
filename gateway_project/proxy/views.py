"""The proxy view: HTTP in, checks (size, token, throttle), upstream answer out."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from browser import services as browser
from browser.authentication import BrowserCookieAuthentication
from browser.views import unauthorized_page
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from rest_framework import exceptions, permissions
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from proxy import metrics, sessions
from proxy.authentication import GatewayJWTAuthentication
from proxy.exceptions import (
    BadPath,
    PayloadTooLarge,
    RevocationUnavailable,
    UpstreamAnswerTooLarge,
    UpstreamTimeout,
    UpstreamUnavailable,
    UpstreamUnreachable,
)
from proxy.revocation import token_revoke, token_unrevoke
from proxy.services import proxy_forward, request_body_read, request_headers_build, response_build
from proxy.throttling import GatewayAnonThrottle, GatewayUserThrottle

logger = logging.getLogger(__name__)

# Routes reachable without a token (everything else behind the gateway needs one).
PUBLIC_ROUTES = frozenset(
    {
        ("POST", "/api/auth/register"),
        ("POST", "/api/auth/login"),
        ("POST", "/api/auth/refresh"),
        ("GET", "/api/auth/.well-known/jwks.json"),
        ("HEAD", "/api/auth/.well-known/jwks.json"),
    }
)
# These end the session: the presented access token is revoked before auth is called, and the
# revocation withdrawn again unless auth answers 2xx (or times out: it may have ended it).
REVOKING_ROUTES = frozenset(
    {
        ("POST", "/api/auth/logout"),
        ("DELETE", "/api/auth/me"),
    }
)


def is_public(method: str, path: str) -> bool:
    return (method, path) in PUBLIC_ROUTES


# In the path as sent (gunicorn's RAW_URI) or once decoded: an escaped dot, slash or backslash
# (or a double-escaped one, decoded once here) has no use in any route of the services.
_ESCAPES = ("%2e", "%2f", "%5c")


def path_is_safe(request: HttpRequest) -> bool:
    """False for a path an upstream could resolve outside the route's prefix: a ``.`` or ``..``
    segment (sent literally or as ``%2e``), an encoded slash or backslash, or a backslash."""
    path = request.path_info  # percent-decoded by the server
    if "\\" in path or any(escape in path.lower() for escape in _ESCAPES):
        return False
    if any(segment in (".", "..") for segment in path.split("/")):
        return False
    raw = str(request.META.get("RAW_URI") or request.META.get("REQUEST_URI") or "")
    raw_path = raw.split("?", 1)[0].lower()
    return not any(escape in raw_path for escape in _ESCAPES)


def _revocation_store(claims: dict[str, Any]) -> str:
    """Revoke the presented access token (its jti returned); 503 ``revocation_unavailable``
    if Redis cannot store it."""
    jti = str(claims["jti"])
    try:
        token_revoke(jti=jti, exp=claims["exp"])
    except Exception as exc:
        logger.warning("revocation not stored, logout refused: %s", exc)
        raise RevocationUnavailable() from exc
    return jti


def _revocation_withdraw(jti: str, *, method: str, path: str) -> None:
    """Auth refused (or never got) the logout: the token is valid again, as the session is."""
    try:
        token_unrevoke(jti=jti)
    except Exception:
        # Fails safe: the token stays refused until it expires; the refresh token still works.
        logger.exception("could not withdraw the revocation after a failed %s %s", method, path)


class _ForcedNegotiation(DefaultContentNegotiation):
    """Errors are JSON whatever the client's Accept says (a proxy must not answer 406)."""

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))
        return renderer, renderer.media_type


_REJECTION_REASONS: list[tuple[type[Exception], str]] = [
    (exceptions.NotAuthenticated, "unauthorized"),
    (exceptions.AuthenticationFailed, "unauthorized"),
    (exceptions.Throttled, "throttled"),
    (PayloadTooLarge, "payload_too_large"),
    (BadPath, "bad_path"),
]


# Answered by proxy_forward, which has logged the exchange already.
_UPSTREAM_ERRORS = (
    UpstreamUnavailable,
    UpstreamUnreachable,
    UpstreamTimeout,
    UpstreamAnswerTooLarge,
)


class ProxyView(APIView):
    """Forwards the request, path and query unchanged, to one upstream.

    Public routes skip the token check; every other route needs a valid access token, and the
    upstream gets the caller as a freshly signed ``X-User`` (client-sent ones are dropped).
    """

    upstream = ""
    renderer_classes = [JSONRenderer]
    parser_classes: list[Any] = []
    content_negotiation_class = _ForcedNegotiation
    throttle_classes = [GatewayAnonThrottle, GatewayUserThrottle]
    public = False

    def setup(self, request: HttpRequest, *args: Any, **kwargs: Any) -> None:
        super().setup(request, *args, **kwargs)
        self.public = is_public(request.method or "", request.path)

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # Before the token check and throttles: such a path is refused whoever sends it.
        if not path_is_safe(request._request):
            raise BadPath()
        super().initial(request, *args, **kwargs)

    def get_authenticators(self) -> list[Any]:
        if self.public:
            return []
        # Bearer first; the browser cookie only for HTML requests (see the browser app).
        return [GatewayJWTAuthentication(), BrowserCookieAuthentication()]

    def get_permissions(self) -> list[Any]:
        if self.public:
            return [permissions.AllowAny()]
        return [permissions.IsAuthenticated()]

    def get_authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'

    @property
    def default_response_headers(self) -> dict[str, str]:
        return {}  # no Allow/Vary of our own on top of the upstream's answer

    def handle_exception(self, exc: Exception) -> Response:
        for kind, reason in _REJECTION_REASONS:
            if isinstance(exc, kind):
                metrics.rejected_requests.labels(reason=reason).inc()
                break
        response = super().handle_exception(exc)
        if response.status_code == 401 and browser.wants_html(self.request._request):
            response = unauthorized_page(  # type: ignore[assignment]  # an HTML page
                request=self.request._request, detail=str(getattr(exc, "detail", ""))
            )
        # Counted above; the body-size middleware must not count this 413 again.
        response._gateway_counted = True  # type: ignore[attr-defined]
        if isinstance(exc, _UPSTREAM_ERRORS):
            response._has_been_logged = True  # type: ignore[attr-defined]  # proxy_forward did
        return response

    def proxy(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponse:
        django_request = request._request
        body = request_body_read(request=django_request, limit=settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
        user = request.user
        caller = None
        if user is not None and user.is_authenticated:
            caller = {"id": user.id, "username": user.username}
        headers = request_headers_build(request=django_request)
        browser.forwarded_headers_strip(
            headers=headers,
            session=isinstance(request.successful_authenticator, BrowserCookieAuthentication),
        )
        method = django_request.method or "GET"
        claims = request.auth
        revoked: str | None = None  # the jti revoked for this request
        mark: sessions.Mark | None = None  # the user's sessions mark this request set
        if isinstance(claims, dict):
            # Stored before auth is called: if Redis cannot take it, auth is not called (503,
            # the refresh token stays valid and the client can retry), so nobody is told they
            # logged out while their access token still works.
            if sessions.ends_sessions(
                method=method,
                path=django_request.path,
                body=body,
                content_type=django_request.META.get("CONTENT_TYPE", ""),
            ):
                mark = sessions.sessions_end(claims=claims)
            if (method, django_request.path) in REVOKING_ROUTES:
                try:
                    revoked = _revocation_store(claims)
                except RevocationUnavailable:
                    if mark is not None:
                        sessions.sessions_end_withdraw(mark)
                    raise
        try:
            answer = proxy_forward(
                upstream_name=self.upstream,
                method=method,
                path=django_request.get_full_path(),
                headers=headers,
                body=body,
                user=caller,
            )
        except UpstreamTimeout:
            # auth may have ended the session before it timed out: the revocation stays.
            raise
        except Exception:
            self._withdraw(revoked, mark, method=method, path=django_request.path)
            raise
        if not 200 <= answer.status < 300:
            self._withdraw(revoked, mark, method=method, path=django_request.path)
        response = response_build(answer=answer)
        if isinstance(request.successful_authenticator, BrowserCookieAuthentication):
            response = browser.page_adapt(
                request=django_request,
                response=response,
                logout_url=reverse("rest_framework:logout"),
            )
        return response

    @staticmethod
    def _withdraw(
        revoked: str | None, mark: sessions.Mark | None, *, method: str, path: str
    ) -> None:
        """Auth refused (or never got) a session-ending request: the session stays."""
        if revoked is not None:
            _revocation_withdraw(revoked, method=method, path=path)
        if mark is not None:
            sessions.sessions_end_withdraw(mark)

    get = post = put = patch = delete = head = options = proxy  # type: ignore[assignment]

    def http_method_not_allowed(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponse:
        """Other methods (TRACE, QUERY...) go upstream too, once the caller passed the checks.

        The service answers 405 with its ``Allow`` header (found by schemathesis); the gateway
        cannot know which methods an upstream resource allows.
        """
        return self.proxy(request, *args, **kwargs)
