"""simplejwt tokens signed with this service's RS256 key, carrying ``kid``, ``iss`` and ``aud``.

Claims (what the gateway checks): ``user_id`` (string), ``username``, ``token_type``
("access" / "refresh"), ``jti``, ``exp``, ``iat``, ``iss``, ``aud``; header ``alg`` RS256, ``kid``.
Refresh tokens also carry ``fam``, the id of their rotation chain (never copied into access tokens).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any
from uuid import UUID, uuid4

import jwt
from cryptography.hazmat.primitives import serialization
from django.conf import settings
from django.contrib.auth.models import User
from rest_framework_simplejwt import tokens as simplejwt_tokens
from rest_framework_simplejwt.backends import TokenBackend
from rest_framework_simplejwt.exceptions import TokenBackendError, TokenBackendExpiredToken
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken
from rest_framework_simplejwt.utils import datetime_from_epoch

from accounts import keys
from accounts.models import RefreshTokenFamily

REQUIRED_CLAIMS = ["exp", "iat", "jti", "iss", "aud", "token_type", "user_id"]
FAMILY_CLAIM = "fam"
# The issue time in ms, copied into the access token: the gateway refuses tokens issued before a
# user's "log out everywhere", password change or deletion, to the ms (``iat`` has seconds).
ISSUED_MS_CLAIM = "iat_ms"


def family_of(payload: dict[str, Any]) -> UUID | None:
    """The rotation family of a verified refresh payload (a token from before families: its jti)."""
    for value in (payload.get(FAMILY_CLAIM), payload.get("jti")):
        try:
            return UUID(str(value))
        except ValueError:
            continue
    return None


class KeyedTokenBackend(TokenBackend):
    """RS256 only; puts ``kid`` in the header and requires every claim the platform relies on."""

    def __init__(self, *, key: keys.SigningKey, issuer: str, audience: str) -> None:
        super().__init__(
            keys.ALGORITHM,
            key.private_pem,
            key.public_pem,
            audience=audience,
            issuer=issuer,
            leeway=0,
        )
        self.kid = key.kid

    def encode(self, payload: dict[str, Any]) -> str:
        claims = {**payload, "aud": self.audience, "iss": self.issuer}
        return jwt.encode(
            claims, self.prepared_signing_key, algorithm=self.algorithm, headers={"kid": self.kid}
        )

    def decode(self, token: Any, verify: bool = True) -> dict[str, Any]:
        """Verify with the key the header's ``kid`` names: the current or, during a rotation,
        the previous one (a token without ``kid`` is checked against the current key)."""
        if not verify:
            raise TokenBackendError("tokens are always verified here")
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.InvalidTokenError as exc:
            raise TokenBackendError("Token is invalid") from exc
        if kid is None:
            verifying_key = self.prepared_verifying_key
        else:
            pem = keys.verifying_keys().get(kid) if isinstance(kid, str) else None
            if pem is None:
                raise TokenBackendError("Token is invalid")  # unknown or withdrawn key
            verifying_key = _public_key(pem)
        try:
            return jwt.decode(
                token,
                verifying_key,
                algorithms=[self.algorithm],  # never "none", never HS* with the public key
                audience=self.audience,
                issuer=self.issuer,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenBackendExpiredToken("Token is expired") from exc
        except jwt.InvalidTokenError as exc:
            raise TokenBackendError("Token is invalid") from exc


@lru_cache(maxsize=8)
def _public_key(pem: str) -> Any:
    return serialization.load_pem_public_key(pem.encode())


@lru_cache(maxsize=8)
def _backend(private_pem: str, key_id: str, issuer: str, audience: str) -> KeyedTokenBackend:
    return KeyedTokenBackend(key=keys.build(private_pem, key_id), issuer=issuer, audience=audience)


def token_backend() -> KeyedTokenBackend:
    key = keys.signing_key()
    return _backend(key.private_pem, key.kid, settings.JWT_ISSUER, settings.JWT_AUDIENCE)


class _KeyedToken:
    @property
    def token_backend(self) -> KeyedTokenBackend:
        return token_backend()


class AccessToken(_KeyedToken, simplejwt_tokens.AccessToken):
    """Short-lived; the gateway verifies it and turns it into the signed user context."""


class RefreshToken(_KeyedToken, simplejwt_tokens.RefreshToken):
    """Long-lived, single use (rotated on refresh), listed as outstanding so it can be revoked."""

    access_token_class = AccessToken
    no_copy_claims = (*simplejwt_tokens.RefreshToken.no_copy_claims, FAMILY_CLAIM)

    @classmethod
    def for_user(cls, user: User, *, family: UUID | None = None) -> RefreshToken:  # type: ignore[override]
        """A new refresh token of ``family`` (a new family when None), listed as outstanding."""
        token = cls()
        token["user_id"] = str(user.pk)
        token["username"] = user.get_username()
        token[ISSUED_MS_CLAIM] = int(token.current_time.timestamp() * 1000)
        family = family or uuid4()
        token[FAMILY_CLAIM] = str(family)
        outstanding = OutstandingToken.objects.create(
            user=user,
            jti=token["jti"],
            token=str(token),
            created_at=token.current_time,
            expires_at=datetime_from_epoch(token["exp"]),
        )
        RefreshTokenFamily.objects.create(token=outstanding, family=family)
        return token
