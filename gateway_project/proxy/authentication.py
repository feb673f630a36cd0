"""DRF authentication at the gateway: ``Authorization: Bearer <RS256 access token>``."""

from __future__ import annotations

from typing import Any

from rest_framework import authentication
from rest_framework.request import Request

from common.context import ContextUser
from common.log_context import user_id_var
from proxy.exceptions import InvalidToken
from proxy.jwt_check import token_claims_get

KEYWORD = b"bearer"


class GatewayJWTAuthentication(authentication.BaseAuthentication):
    """Yields a ``ContextUser`` (id, username) and the verified claims as ``request.auth``.

    No ``Authorization`` header: not authenticated (protected routes answer 401). A header that
    is not a valid access token: 401 at once.
    """

    def authenticate(self, request: Request) -> tuple[ContextUser, dict[str, Any]] | None:
        header = authentication.get_authorization_header(request).split()
        if not header:
            return None
        if header[0].lower() != KEYWORD or len(header) != 2:
            raise InvalidToken()
        try:
            token = header[1].decode("ascii")
        except UnicodeDecodeError as exc:
            raise InvalidToken() from exc
        claims = token_claims_get(token=token)
        user = ContextUser(id=str(claims["user_id"]), username=str(claims.get("username", "")))
        user_id_var.set(user.id)
        return user, claims

    def authenticate_header(self, request: Request) -> str:
        # A WWW-Authenticate value makes DRF answer 401 (not 403) for missing credentials.
        return 'Bearer realm="api"'
