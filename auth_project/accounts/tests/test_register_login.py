"""POST /api/auth/register and /api/auth/login."""

from __future__ import annotations

import json
import logging

import jwt
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import MD5PasswordHasher
from django.test import override_settings

from accounts import keys
from accounts.exceptions import (
    ERROR_INVALID_CREDENTIALS,
    ERROR_NOT_A_STRING,
    ERROR_PAYLOAD_TOO_LARGE,
    ERROR_USERNAME_TAKEN,
)
from accounts.tests.conftest import LOGIN, REGISTER
from accounts.tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db
User = get_user_model()


def decode(token: str, **kwargs) -> dict:
    return jwt.decode(
        token,
        keys.signing_key().public_pem,
        algorithms=["RS256"],
        audience="musicstream",
        issuer="musicstream-auth",
        **kwargs,
    )


def test_register_answers_201_with_tokens_and_user(api):
    response = api.post(REGISTER, {"username": "ada", "password": PASSWORD}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"token", "refresh", "user"}
    user = User.objects.get(username="ada")
    assert body["user"]["id"] == str(user.pk)
    assert body["user"]["username"] == "ada"
    assert body["user"]["date_joined"]
    assert user.check_password(PASSWORD)
    assert user.password != PASSWORD


def test_tokens_carry_the_claims_the_gateway_checks(api):
    body = api.post(REGISTER, {"username": "grace", "password": PASSWORD}, format="json").json()
    access, refresh = decode(body["token"]), decode(body["refresh"])
    user_id = body["user"]["id"]
    for claims, kind in ((access, "access"), (refresh, "refresh")):
        assert claims["user_id"] == user_id and isinstance(claims["user_id"], str)
        assert claims["username"] == "grace"
        assert claims["token_type"] == kind
        assert claims["iss"] == "musicstream-auth"
        assert claims["aud"] == "musicstream"
        assert {"jti", "exp", "iat"} <= set(claims)
    assert access["exp"] - access["iat"] == 900
    assert refresh["exp"] - refresh["iat"] == 604800
    header = jwt.get_unverified_header(body["token"])
    assert header["alg"] == "RS256"
    assert header["kid"] == keys.signing_key().kid


@override_settings(JWT_ISSUER="other-issuer", JWT_AUDIENCE="other-aud")
def test_issuer_and_audience_come_from_settings(api):
    body = api.post(REGISTER, {"username": "iss", "password": PASSWORD}, format="json").json()
    claims = jwt.decode(
        body["token"],
        keys.signing_key().public_pem,
        algorithms=["RS256"],
        audience="other-aud",
        issuer="other-issuer",
    )
    assert claims["username"] == "iss"


def test_register_weak_password_is_400_and_creates_nothing(api):
    for weak in ("short", "12345678901", "password123", "ada-lovelace"):
        response = api.post(REGISTER, {"username": "ada-lovelace", "password": weak}, format="json")
        assert response.status_code == 400, weak
        assert "password" in response.json()["errors"], weak
    assert not User.objects.filter(username="ada-lovelace").exists()


def test_register_taken_username_is_400_naming_the_field(api):
    UserFactory(username="taken")
    for name in ("taken", "TAKEN"):
        response = api.post(REGISTER, {"username": name, "password": PASSWORD}, format="json")
        assert response.status_code == 400
        assert response.json()["errors"] == {"username": [ERROR_USERNAME_TAKEN]}
    assert User.objects.filter(username__iexact="taken").count() == 1


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "username"),
        ({"username": "x"}, "password"),
        ({"password": PASSWORD}, "username"),
        ({"username": 12345, "password": PASSWORD}, "username"),
        ({"username": "bob", "password": ["a", "b"]}, "password"),
        ({"username": "bob", "password": 123456789}, "password"),
        ({"username": None, "password": PASSWORD}, "username"),
        ({"username": "bad name!", "password": PASSWORD}, "username"),
        ({"username": "x" * 151, "password": PASSWORD}, "username"),
        ({"username": "", "password": PASSWORD}, "username"),
    ],
)
def test_register_bad_input_is_400_naming_the_field(api, body, field):
    response = api.post(REGISTER, body, format="json")
    assert response.status_code == 400
    data = response.json()
    assert data["detail"] and data["code"]
    assert field in data["errors"]
    assert User.objects.count() == 0


def test_wrong_types_say_not_a_string(api):
    response = api.post(REGISTER, {"username": 7, "password": PASSWORD}, format="json")
    assert response.json()["errors"]["username"] == [ERROR_NOT_A_STRING]


@pytest.mark.parametrize("path", [REGISTER, LOGIN])
def test_malformed_json_is_400(api, path):
    response = api.post(path, '{"username": "a", ', content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"


@pytest.mark.parametrize("path", [REGISTER, LOGIN])
def test_json_that_is_not_an_object_is_400(api, path):
    response = api.post(path, "[1, 2]", content_type="application/json")
    assert response.status_code == 400


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1024)
@pytest.mark.parametrize("path", [REGISTER, LOGIN])
def test_oversized_body_is_413(api, path):
    body = json.dumps({"username": "big", "password": "p" * 4096})
    response = api.post(path, body, content_type="application/json")
    assert response.status_code == 413
    assert response.json() == {"detail": ERROR_PAYLOAD_TOO_LARGE, "code": "payload_too_large"}
    assert User.objects.count() == 0


def test_login_answers_200_with_tokens_and_user(api, user):
    response = api.post(LOGIN, {"username": user.username, "password": PASSWORD}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["user"] == {
        "id": str(user.pk),
        "username": user.username,
        "date_joined": body["user"]["date_joined"],
        "last_login": body["user"]["last_login"],
    }
    assert body["user"]["last_login"]
    assert decode(body["token"])["user_id"] == str(user.pk)
    assert decode(body["refresh"])["token_type"] == "refresh"


def test_login_unknown_user_and_wrong_password_answer_the_same_401(api, user):
    wrong = api.post(LOGIN, {"username": user.username, "password": "nope-nope-1"}, format="json")
    unknown = api.post(LOGIN, {"username": "nobody", "password": PASSWORD}, format="json")
    assert wrong.status_code == unknown.status_code == 401
    assert (
        wrong.json()
        == unknown.json()
        == {"detail": ERROR_INVALID_CREDENTIALS, "code": "invalid_credentials"}
    )


def test_login_inactive_user_answers_the_same_401(api):
    user = UserFactory(is_active=False)
    response = api.post(LOGIN, {"username": user.username, "password": PASSWORD}, format="json")
    assert response.status_code == 401
    assert response.json()["detail"] == ERROR_INVALID_CREDENTIALS


def test_login_runs_the_hasher_for_unknown_users_too(api, user, monkeypatch):
    """No timing side channel: an unknown name costs a hash like a wrong password does."""
    calls = []
    original = MD5PasswordHasher.encode

    def counting(self, password, salt):
        calls.append(password)
        return original(self, password, salt)

    monkeypatch.setattr(MD5PasswordHasher, "encode", counting)
    api.post(LOGIN, {"username": "nobody-at-all", "password": "guess-1"}, format="json")
    assert calls == ["guess-1"]
    calls.clear()
    api.post(LOGIN, {"username": user.username, "password": "guess-2"}, format="json")
    assert calls == ["guess-2"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"username": "a"},
        {"password": "b"},
        {"username": 1, "password": "b"},
        {"username": "a", "password": {"x": 1}},
    ],
)
def test_login_bad_input_is_400(api, body):
    response = api.post(LOGIN, body, format="json")
    assert response.status_code == 400
    assert response.json()["errors"]


def test_register_and_login_log_user_id_but_no_secret(api, caplog):
    caplog.set_level(logging.INFO)
    body = api.post(REGISTER, {"username": "logged", "password": PASSWORD}, format="json").json()
    login_body = api.post(LOGIN, {"username": "logged", "password": PASSWORD}, format="json").json()
    records = [r for r in caplog.records if r.name.startswith("accounts")]
    messages = {r.getMessage(): r for r in records}
    assert messages["user registered"].user_id == body["user"]["id"]
    assert messages["user logged in"].user_id == body["user"]["id"]
    assert all(r.levelno == logging.INFO for r in messages.values())
    everything = caplog.text + " ".join(str(vars(r)) for r in caplog.records)
    for secret in (
        PASSWORD,
        body["token"],
        body["refresh"],
        login_body["token"],
        login_body["refresh"],
    ):
        assert secret not in everything


def test_public_endpoints_ignore_a_forged_user_context(api, user):
    api.credentials(HTTP_X_USER='{"id":"1","username":"x"}', HTTP_X_USER_SIGNATURE="t=1,v1=00")
    response = api.post(LOGIN, {"username": user.username, "password": PASSWORD}, format="json")
    assert response.status_code == 200
