"""HTTP views of the auth service: validate input, call one service function, serialize."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import keys, selectors, services
from accounts.serializers import (
    CredentialsSerializer,
    ErrorSerializer,
    JWKSSerializer,
    LoginSerializer,
    MeDeleteSerializer,
    MeUpdateSerializer,
    RefreshInputSerializer,
    RefreshOutputSerializer,
    TokenPairSerializer,
    UserSerializer,
    ValidationErrorSerializer,
)
from accounts.throttling import (
    LoginIPThrottle,
    RegisterIPThrottle,
    client_address,
    login_failure_guard,
)

TAGS = ["auth"]
BAD_REQUEST = OpenApiResponse(ValidationErrorSerializer, "Invalid input (fields named).")
UNAUTHORIZED = OpenApiResponse(ErrorSerializer, "Missing or invalid credentials.")
THROTTLED = OpenApiResponse(ErrorSerializer, "Too many attempts; see Retry-After.")
TOO_LARGE = OpenApiResponse(ErrorSerializer, "Request body too large.")

# Examples shown in the docs (and sent by schemathesis' examples phase).
_TOKEN = "eyJhbGciOiJSUzI1NiIsImtpZCI6IjE0YjkiLCJ0eXAiOiJKV1QifQ.eyJ1c2VyX2lkIjoiNDIifQ.c2ln"
_USER = {
    "id": "42",
    "username": "alice",
    "date_joined": "2026-11-27T21:00:00Z",
    "last_login": "2026-11-27T21:05:00Z",
}
CREDENTIALS_EXAMPLE = OpenApiExample(
    "Credentials",
    value={"username": "alice", "password": "correct horse battery staple"},
    request_only=True,
)
TOKEN_PAIR_EXAMPLES = [
    OpenApiExample(
        "Signed in",
        value={"token": _TOKEN, "refresh": _TOKEN, "user": _USER},
        response_only=True,
        status_codes=[status_code],
    )
    for status_code in ("200", "201")
]
REFRESH_EXAMPLES = [
    OpenApiExample("Refresh token", value={"refresh": _TOKEN}, request_only=True),
    OpenApiExample("New pair", value={"token": _TOKEN, "refresh": _TOKEN}, response_only=True),
]
USER_EXAMPLE = OpenApiExample("Profile", value=_USER, response_only=True)


def _caller_id(request: Request) -> str:
    """The id the gateway vouched for (common.context.ContextUser.id, a string)."""
    return str(request.user.pk)


class PublicAPIView(APIView):
    """Base of the endpoints open to anyone (register, login, refresh, JWKS)."""

    # No user context on public endpoints: a stale or odd X-User must not break login.
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]


class RegisterView(PublicAPIView):
    """POST /api/auth/register: a new user and its first token pair."""

    throttle_classes = [RegisterIPThrottle]

    @extend_schema(
        tags=TAGS,
        operation_id="auth_register",
        summary="Create a user and sign in",
        request=CredentialsSerializer,
        responses={201: TokenPairSerializer, 400: BAD_REQUEST, 413: TOO_LARGE, 429: THROTTLED},
        examples=[CREDENTIALS_EXAMPLE, *TOKEN_PAIR_EXAMPLES],
    )
    def post(self, request: Request) -> Response:
        serializer = CredentialsSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        pair = services.user_register(**serializer.validated_data)
        return Response(TokenPairSerializer(pair).data, status=status.HTTP_201_CREATED)


class LoginView(PublicAPIView):
    """POST /api/auth/login: a token pair for valid credentials.

    Throttled per client IP (every attempt), and per username + address and per username
    (failed attempts only): see ``accounts.throttling``.
    """

    throttle_classes = [LoginIPThrottle]

    @extend_schema(
        tags=TAGS,
        operation_id="auth_login",
        summary="Sign in",
        request=LoginSerializer,
        responses={
            200: TokenPairSerializer,
            400: BAD_REQUEST,
            401: UNAUTHORIZED,
            413: TOO_LARGE,
            429: THROTTLED,
        },
        examples=[CREDENTIALS_EXAMPLE, *TOKEN_PAIR_EXAMPLES],
    )
    def post(self, request: Request) -> Response:
        serializer = LoginSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with login_failure_guard(
            username=serializer.validated_data["username"], address=client_address(request)
        ):
            pair = services.user_login(**serializer.validated_data)
        return Response(TokenPairSerializer(pair).data)


class RefreshView(PublicAPIView):
    """POST /api/auth/refresh: rotate a refresh token (the old one is used up)."""

    @extend_schema(
        tags=TAGS,
        operation_id="auth_refresh",
        summary="Rotate a refresh token: new access and refresh tokens",
        request=RefreshInputSerializer,
        examples=REFRESH_EXAMPLES,
        responses={
            200: RefreshOutputSerializer,
            400: BAD_REQUEST,
            401: UNAUTHORIZED,
            413: TOO_LARGE,
        },
    )
    def post(self, request: Request) -> Response:
        serializer = RefreshInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        pair = services.token_refresh(**serializer.validated_data)
        return Response(RefreshOutputSerializer(pair).data)


class LogoutView(APIView):
    """POST /api/auth/logout: revoke the caller's refresh token."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        tags=TAGS,
        operation_id="auth_logout",
        summary="Revoke a refresh token of the caller",
        request=RefreshInputSerializer,
        responses={
            204: OpenApiResponse(description="Revoked."),
            400: BAD_REQUEST,
            401: UNAUTHORIZED,
            403: OpenApiResponse(ErrorSerializer, "The token is someone else's."),
            413: TOO_LARGE,
        },
    )
    def post(self, request: Request) -> Response:
        serializer = RefreshInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.user_logout(user_id=_caller_id(request), **serializer.validated_data)
        return Response(status=status.HTTP_204_NO_CONTENT)


class LogoutAllView(APIView):
    """POST /api/auth/logout-all: end every session of the caller, on every device."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        tags=TAGS,
        operation_id="auth_logout_all",
        summary="Log out everywhere: every refresh token of the caller is revoked, and the "
        "gateway refuses every access token issued before this request",
        request=None,
        responses={204: OpenApiResponse(description="Every session ended."), 401: UNAUTHORIZED},
    )
    def post(self, request: Request) -> Response:
        services.user_logout_everywhere(user_id=_caller_id(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeView(APIView):
    """GET/PATCH/DELETE /api/auth/me: the caller's own account."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        tags=TAGS,
        operation_id="auth_me_retrieve",
        summary="The caller's profile",
        responses={200: UserSerializer, 401: UNAUTHORIZED},
        examples=[USER_EXAMPLE],
    )
    def get(self, request: Request) -> Response:
        user = selectors.user_get(user_id=_caller_id(request))
        return Response(UserSerializer(user).data)

    @extend_schema(
        tags=TAGS,
        operation_id="auth_me_update",
        summary="Change username and/or password (needs the current password); a new "
        "password ends every session, this one included: sign in again",
        request=MeUpdateSerializer,
        responses={200: UserSerializer, 400: BAD_REQUEST, 401: UNAUTHORIZED, 413: TOO_LARGE},
    )
    def patch(self, request: Request) -> Response:
        serializer = MeUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = services.user_update(user_id=_caller_id(request), **serializer.validated_data)
        return Response(UserSerializer(user).data)

    @extend_schema(
        tags=TAGS,
        operation_id="auth_me_delete",
        summary="Delete the caller's account (publishes UserDeleted); every session ends",
        request=MeDeleteSerializer,
        responses={
            204: OpenApiResponse(description="Deleted."),
            400: BAD_REQUEST,
            401: UNAUTHORIZED,
            413: TOO_LARGE,
        },
    )
    def delete(self, request: Request) -> Response:
        serializer = MeDeleteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.user_delete(
            user_id=_caller_id(request),
            request_id=getattr(request, "request_id", ""),
            **serializer.validated_data,
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class JWKSView(PublicAPIView):
    """GET /api/auth/.well-known/jwks.json: the public keys, cacheable."""

    @extend_schema(
        tags=TAGS,
        operation_id="auth_jwks",
        summary="Public keys that verify the tokens (JWK Set)",
        responses={200: JWKSSerializer},
    )
    def get(self, request: Request) -> Response:
        response = Response(keys.jwks())
        response["Cache-Control"] = f"public, max-age={settings.JWKS_MAX_AGE_SECONDS}"
        return response
