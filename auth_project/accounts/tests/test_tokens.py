"""POST /api/auth/refresh (rotation) and every way a token can be bad; the JWKS."""

from __future__ import annotations

import base64
import json
import time
from uuid import UUID

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.contrib.auth import get_user_model
from jwt import PyJWKSet

from accounts import keys
from accounts.exceptions import ERROR_INVALID_REFRESH
from accounts.models import RefreshTokenFamily
from accounts.tests.conftest import JWKS, REFRESH, b64, forge, hs256_with_public_key, login
from accounts.tokens import RefreshToken

pytestmark = pytest.mark.django_db


def refresh(api, token):
    return api.post(REFRESH, {"refresh": token}, format="json")


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def sign(claims: dict, *, key: str | None = None, headers: dict | None = None) -> str:
    signing = keys.signing_key()
    return jwt.encode(
        claims,
        key or signing.private_pem,
        algorithm="RS256",
        headers=headers if headers is not None else {"kid": signing.kid},
    )


def assert_refused(response):
    assert response.status_code == 401, response.content
    assert response.json() == {"detail": ERROR_INVALID_REFRESH, "code": "token_not_valid"}


def test_refresh_rotates_and_the_old_token_is_refused(api, user):
    first = login(api, user.username)
    response = refresh(api, first["refresh"])
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"token", "refresh"}
    assert body["refresh"] != first["refresh"]
    access = claims_of(body["token"])
    assert access["token_type"] == "access"
    assert access["user_id"] == str(user.pk)
    assert access["username"] == user.username
    assert claims_of(body["refresh"])["jti"] != claims_of(first["refresh"])["jti"]
    again = refresh(api, body["refresh"])  # the new one works, once
    assert again.status_code == 200
    assert_refused(refresh(api, body["refresh"]))


def test_reusing_a_rotated_refresh_token_revokes_the_whole_chain(api, user):
    """login -> R1; refresh R1 -> R2; R1 again -> 401, and R2 no longer works either."""
    first = login(api, user.username)["refresh"]
    second_pair = refresh(api, first).json()
    second = second_pair["refresh"]
    third = refresh(api, second).json()["refresh"]
    assert claims_of(first)["fam"] == claims_of(second)["fam"] == claims_of(third)["fam"]
    assert "fam" not in claims_of(second_pair["token"])  # access tokens do not carry it
    assert_refused(refresh(api, first))  # the replay, by a thief or by the user
    assert_refused(refresh(api, third))  # the newest of the chain is gone too
    assert_refused(refresh(api, second))
    family = RefreshTokenFamily.objects.filter(family=claims_of(first)["fam"])
    assert family.count() == 3
    assert not family.filter(token__blacklistedtoken__isnull=True).exists()


def test_a_reuse_revokes_only_its_own_chain(api, user):
    laptop = login(api, user.username)["refresh"]
    phone = login(api, user.username)["refresh"]
    assert claims_of(laptop)["fam"] != claims_of(phone)["fam"]
    laptop_next = refresh(api, laptop).json()["refresh"]
    assert_refused(refresh(api, laptop))
    assert_refused(refresh(api, laptop_next))
    assert refresh(api, phone).status_code == 200  # the other session lives on


def test_a_refresh_token_from_before_families_starts_its_own(api, user):
    """A token without ``fam`` (issued before this change): its jti names its chain."""
    legacy = RefreshToken.for_user(user)
    del legacy["fam"]
    token = str(legacy)
    successor = refresh(api, token).json()["refresh"]
    assert claims_of(successor)["fam"] == str(UUID(claims_of(token)["jti"]))
    assert_refused(refresh(api, token))
    assert_refused(refresh(api, successor))


def test_refresh_with_an_access_token_is_refused(api, user):
    assert_refused(refresh(api, login(api, user.username)["token"]))


def _valid_claims(api, user) -> dict:
    return claims_of(login(api, user.username)["refresh"])


def test_tampered_token_is_refused(api, user):
    token = login(api, user.username)["refresh"]
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["user_id"] = "999999"
    tampered = f"{header}.{b64(json.dumps(claims).encode())}.{signature}"
    assert_refused(refresh(api, tampered))
    assert_refused(refresh(api, token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")))


def test_expired_token_is_refused(api, user):
    claims = _valid_claims(api, user)
    claims.update(iat=int(time.time()) - 7200, exp=int(time.time()) - 60)
    assert_refused(refresh(api, sign(claims)))


@pytest.mark.parametrize("field, value", [("iss", "someone-else"), ("aud", "another-app")])
def test_wrong_issuer_or_audience_is_refused(api, user, field, value):
    claims = _valid_claims(api, user)
    claims[field] = value
    assert_refused(refresh(api, sign(claims)))


@pytest.mark.parametrize("missing", ["iss", "aud", "jti", "exp", "token_type", "user_id"])
def test_token_without_a_required_claim_is_refused(api, user, missing):
    claims = _valid_claims(api, user)
    del claims[missing]
    assert_refused(refresh(api, sign(claims)))


def test_alg_none_is_refused(api, user):
    claims = _valid_claims(api, user)
    assert_refused(refresh(api, forge({"alg": "none", "typ": "JWT"}, claims)))
    assert_refused(refresh(api, forge({"alg": "none", "typ": "JWT"}, claims)[:-1]))


def test_hs256_signed_with_the_public_key_is_refused(api, user):
    assert_refused(refresh(api, hs256_with_public_key(_valid_claims(api, user))))


def test_token_signed_by_another_key_is_refused(api, user):
    other = keys.generate_private_pem()
    assert_refused(refresh(api, sign(_valid_claims(api, user), key=other)))


@pytest.mark.parametrize(
    "garbage", ["not-a-jwt", "a.b.c", "", "eyJhbGciOiJSUzI1NiJ9..", "x" * 4096]
)
def test_garbage_is_refused(api, garbage):
    response = refresh(api, garbage)
    assert response.status_code in (400, 401)


@pytest.mark.parametrize("body", [{}, {"refresh": 5}, {"refresh": None}, {"refresh": ["a"]}])
def test_refresh_bad_input_is_400(api, body):
    response = api.post(REFRESH, body, format="json")
    assert response.status_code == 400
    assert "refresh" in response.json()["errors"]


def test_refresh_of_a_deleted_user_is_refused(api, user):
    token = login(api, user.username)["refresh"]
    get_user_model().objects.filter(pk=user.pk).delete()
    assert_refused(refresh(api, token))


def test_refresh_of_a_deactivated_user_is_refused(api, user):
    token = login(api, user.username)["refresh"]
    user.is_active = False
    user.save()
    assert_refused(refresh(api, token))


def test_jwks_publishes_the_key_that_verifies_the_tokens(api, user):
    response = api.get(JWKS)
    assert response.status_code == 200
    assert response["Cache-Control"].startswith("public, max-age=")
    body = response.json()
    assert [k["kid"] for k in body["keys"]] == [keys.signing_key().kid]
    jwk = body["keys"][0]
    assert jwk["kty"] == "RSA" and jwk["alg"] == "RS256" and jwk["use"] == "sig"
    assert "d" not in jwk and "p" not in jwk  # public members only
    token = login(api, user.username)["token"]
    kid = jwt.get_unverified_header(token)["kid"]
    key = PyJWKSet.from_dict(body)[kid]
    claims = jwt.decode(
        token, key.key, algorithms=["RS256"], audience="musicstream", issuer="musicstream-auth"
    )
    assert claims["user_id"] == str(user.pk)


def test_jwks_needs_no_user_context(api):
    api.credentials(HTTP_X_USER="forged", HTTP_X_USER_SIGNATURE="forged")
    assert api.get(JWKS).status_code == 200


def test_kid_is_the_rfc7638_thumbprint():
    # The example key of RFC 7638, section 3.1.
    n = (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc"
        "_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGj"
        "QR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-"
        "bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKg"
        "w"
    )
    modulus = int.from_bytes(base64.urlsafe_b64decode(n + "=" * (-len(n) % 4)), "big")
    public = rsa.RSAPublicNumbers(65537, modulus).public_key()
    assert keys.thumbprint(public) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


@pytest.mark.django_db(transaction=True)
def test_a_refresh_token_rotates_once_even_under_concurrent_use(user):
    """Two requests racing with the same refresh token: exactly one gets a new pair."""
    import threading

    from django.db import connections
    from rest_framework.test import APIClient

    token = login(APIClient(), user.username)["refresh"]
    barrier = threading.Barrier(4)
    statuses: list[int] = []

    def use() -> None:
        try:
            client = APIClient()
            barrier.wait(10)
            statuses.append(refresh(client, token).status_code)
        finally:
            connections.close_all()  # this thread's connection

    threads = [threading.Thread(target=use) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(statuses) == [200, 401, 401, 401]
    # The losers presented a used token: the whole chain, the winner's new token too, is revoked.
    family = claims_of(token)["fam"]
    assert not RefreshTokenFamily.objects.filter(
        family=family, token__blacklistedtoken__isnull=True
    ).exists()
