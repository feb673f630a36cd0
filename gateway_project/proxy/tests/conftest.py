"""Fixtures: a real fake upstream, an RSA key with its JWKS, token factories, two workers' Redis."""

from __future__ import annotations

import base64
import json
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest
import redis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.test import Client, override_settings

from proxy import upstreams
from proxy.tests.fake_upstream import FakeUpstream

KID = "test-key"
ISSUER = "musicstream-auth"
AUDIENCE = "musicstream"


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def public_pem(rsa_key: rsa.RSAPrivateKey) -> bytes:
    return rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def jwk_of(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": kid, "use": "sig", "alg": "RS256"})
    return jwk


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "user_id": "42",
        "username": "alice",
        "token_type": "access",
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": now + 300,
        "iss": ISSUER,
        "aud": AUDIENCE,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


@pytest.fixture
def make_token(rsa_key: rsa.RSAPrivateKey) -> Callable[..., str]:
    """An RS256 token as the auth service issues it; keyword arguments override claims."""

    def make(*, kid: str = KID, key: rsa.RSAPrivateKey | None = None, **overrides: Any) -> str:
        return jwt.encode(
            claims(**overrides), key or rsa_key, algorithm="RS256", headers={"kid": kid}
        )

    return make


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def fake(rsa_key: rsa.RSAPrivateKey) -> Iterator[FakeUpstream]:
    """A running fake upstream serving the test key's JWKS; every upstream points at it."""
    server = FakeUpstream().start()
    server.jwks = {"keys": [jwk_of(rsa_key, KID)]}
    timeouts = {"url": server.url, "connect_timeout": 0.5, "read_timeout": 1.0}
    config = {name: dict(timeouts) for name in ("auth", "playlist", "analysis")}
    with override_settings(
        UPSTREAMS=config,
        JWKS_URL=server.url + "/api/auth/.well-known/jwks.json",
        JWKS_MIN_REFRESH_SECONDS=60.0,
        # 3 calls of which half failed open a breaker here (20 by default): short tests.
        BREAKER_MIN_CALLS=3,
        BREAKER_FAILURE_RATE=0.5,
        BREAKER_WINDOW_SECONDS=10,
        BREAKER_RESET_TIMEOUT=60.0,
    ):
        try:
            yield server
        finally:
            upstreams.reset()
            server.stop()


@pytest.fixture
def auth_headers(make_token: Callable[..., str]) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {make_token()}"}


@pytest.fixture
def client() -> Client:
    return Client()


@pytest.fixture
def shared_redis(redis_slice: Any) -> tuple[redis.Redis, str]:
    """(client, breaker namespace) on this test's slice of the real Redis (root conftest.py).
    Two breakers on it stand for two gateway workers."""
    return redis_slice.client, upstreams.breaker_namespace("playlist")
