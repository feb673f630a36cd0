"""Fixtures of the accounts tests: users, signed user context, token helpers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest
from rest_framework.test import APIClient

from accounts import keys
from accounts.tests.factories import PASSWORD, UserFactory
from common.testclient import ContextClient
from common.testclient import context_headers as signed_context

REGISTER = "/api/auth/register"
LOGIN = "/api/auth/login"
REFRESH = "/api/auth/refresh"
LOGOUT = "/api/auth/logout"
ME = "/api/auth/me"
JWKS = "/api/auth/.well-known/jwks.json"


@pytest.fixture
def api():
    return APIClient()


@pytest.fixture
def user(db):
    return UserFactory()


@pytest.fixture
def password():
    return PASSWORD


def context_headers(user: Any, *, method: str = "GET", path: str = ME) -> dict[str, str]:
    """What the gateway adds for a verified caller and one bodiless request: X-User, signature."""
    return signed_context({"id": str(user.pk), "username": user.username}, method=method, path=path)


@pytest.fixture
def as_user():
    """``as_user(user)``: a client that sends each request with the signed context of ``user``."""

    def make(user: Any) -> ContextClient:
        return ContextClient().as_user(str(user.pk), user.username)

    return make


def login(api: APIClient, username: str, password: str = PASSWORD) -> dict[str, Any]:
    response = api.post(LOGIN, {"username": username, "password": password}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], payload: dict[str, Any], sign: Any = None) -> str:
    """A compact JWS built by hand (for algorithms PyJWT refuses to produce)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = sign(signing_input.encode()) if sign else b""
    return f"{signing_input}.{b64(signature)}"


def hs256_with_public_key(payload: dict[str, Any]) -> str:
    public = keys.signing_key().public_pem.encode()
    return forge(
        {"alg": "HS256", "typ": "JWT", "kid": keys.signing_key().kid},
        payload,
        lambda data: hmac.new(public, data, hashlib.sha256).digest(),
    )
