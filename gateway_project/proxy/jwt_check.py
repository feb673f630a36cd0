"""The access-token check at the gateway: RS256 signature (auth's JWKS), claims, revocation.

``token_claims_get`` is the one entry point (``proxy.authentication``, the browser session):
a token seen before comes from ``proxy.verified_tokens`` (while its ``exp`` has not passed),
any other is verified against ``proxy.jwks``; then ``proxy.revocation`` is read on every request.
A remembered token still triggers a key-set refresh once the set is older than
``JWKS_CACHE_SECONDS`` (a client replaying one token must not keep a stale set alive).
"""

from __future__ import annotations

import time
from typing import Any

import jwt
from django.conf import settings

from proxy import metrics
from proxy.exceptions import TOKEN_REVOKED, InvalidToken
from proxy.jwks import auth_keys
from proxy.revocation import token_is_revoked
from proxy.verified_tokens import verified_get, verified_remember

ALGORITHM = "RS256"
ACCESS = "access"
REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "jti", "token_type", "user_id"]
# Tokens carry their issue time in ms (auth's ``iat_ms``); ``iat`` (seconds) for older ones.
ISSUED_MS_CLAIM = "iat_ms"


def token_claims_get(*, token: str) -> dict[str, Any]:
    """The verified claims of an access token; ``InvalidToken`` (401) for anything else."""
    claims = verified_get(token)
    if claims is not None:
        keys = auth_keys()
        if keys.stale():
            keys.refresh_if_stale()  # a new set empties the map: the token is checked again
            claims = verified_get(token)
    if claims is None:
        claims = _token_verify(token)
        verified_remember(token, claims)
    elif claims["exp"] + settings.JWT_LEEWAY_SECONDS < time.time():
        raise InvalidToken()
    if token_is_revoked(
        jti=claims["jti"], user_id=str(claims["user_id"]), issued_ms=issued_ms(claims)
    ):
        metrics.revoked_token_hits.inc()
        raise InvalidToken(TOKEN_REVOKED, code="token_revoked")
    return claims


def issued_ms(claims: dict[str, Any]) -> int:
    """When the token was issued, in ms: ``iat_ms``, else ``iat`` (whole seconds)."""
    value = claims.get(ISSUED_MS_CLAIM)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return int(claims["iat"]) * 1000


def _header(token: str) -> dict[str, Any]:
    """The JOSE header, unverified (``jwt.decode`` validates the whole token after)."""
    try:
        return jwt.get_unverified_header(token)
    # Deeply nested JSON in the header (a few KB of brackets) makes json.loads recurse until
    # RecursionError, which PyJWT 2.15 reports as DecodeError: a 401, never a 500
    # (test_deep_token_header.py), whichever way a later PyJWT reports it.
    except (jwt.PyJWTError, RecursionError) as exc:
        raise InvalidToken() from exc


def _token_verify(token: str) -> dict[str, Any]:
    header = _header(token)
    # Only RS256: refuses "none" and HS256-signed-with-the-public-key before touching keys.
    if header.get("alg") != ALGORITHM:
        raise InvalidToken()
    key = auth_keys().public_key(header.get("kid"))  # PyJWT refuses a kid that is not a str
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=settings.JWT_AUDIENCE,
            issuer=settings.JWT_ISSUER,
            leeway=settings.JWT_LEEWAY_SECONDS,
            options={"require": REQUIRED_CLAIMS},
        )
    except jwt.PyJWTError as exc:
        raise InvalidToken() from exc
    if claims.get("token_type") != ACCESS:
        raise InvalidToken()
    if not isinstance(claims.get("jti"), str) or not claims.get("user_id"):
        raise InvalidToken()
    if not isinstance(claims.get("exp"), int | float):
        raise InvalidToken()
    return claims
