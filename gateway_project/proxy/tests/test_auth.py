"""The JWT check at the gateway: 401 cases, JWKS caching and refresh, revocation on logout."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.test import override_settings
from prometheus_client import REGISTRY

from proxy.exceptions import KEYS_UNAVAILABLE, TOKEN_INVALID, TOKEN_MISSING, TOKEN_REVOKED
from proxy.tests.conftest import KID, b64, claims, free_port, jwk_of
from proxy.tests.fake_upstream import Answer


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def assert_401(response, detail=TOKEN_INVALID, code="token_not_valid"):
    assert response.status_code == 401, response.content
    assert response.json() == {"detail": detail, "code": code}
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def test_valid_token_reaches_upstream(fake, client, make_token):
    assert client.get("/api/playlists", **bearer(make_token())).status_code == 200
    assert len(fake.calls()) == 1


def test_missing_token_is_401_and_counted(fake, client):
    before = sample("gateway_rejected_requests_total", reason="unauthorized")
    assert_401(client.get("/api/playlists"), TOKEN_MISSING, "not_authenticated")
    assert sample("gateway_rejected_requests_total", reason="unauthorized") == before + 1
    assert fake.calls() == []


@pytest.mark.parametrize(
    "overrides",
    [
        {"exp": int(time.time()) - 10},
        {"iss": "someone-else"},
        {"aud": "other-audience"},
        {"token_type": "refresh"},
        {"jti": None},
        {"user_id": None},
        {"exp": None},
    ],
    ids=["expired", "wrong-iss", "wrong-aud", "refresh-as-access", "no-jti", "no-user", "no-exp"],
)
def test_bad_claims_are_401(fake, client, make_token, overrides):
    assert_401(client.get("/api/playlists", **bearer(make_token(**overrides))))
    assert fake.calls() == []


def test_tampered_payload_is_401(fake, client, make_token):
    header, payload, signature = make_token().split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=="))
    data["user_id"] = "1"
    forged = ".".join([header, b64(json.dumps(data).encode()), signature])
    assert_401(client.get("/api/playlists", **bearer(forged)))
    assert fake.calls() == []


def test_token_signed_by_another_key_is_401(fake, client, make_token):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert_401(client.get("/api/playlists", **bearer(make_token(key=other))))


def test_alg_none_is_401(fake, client):
    header = b64(json.dumps({"alg": "none", "typ": "JWT", "kid": KID}).encode())
    token = f"{header}.{b64(json.dumps(claims()).encode())}."
    assert_401(client.get("/api/playlists", **bearer(token)))
    assert fake.calls() == []


def test_hs256_signed_with_the_public_key_is_401(fake, client, public_pem):
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": KID}).encode())
    payload = b64(json.dumps(claims()).encode())
    signature = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    token = f"{header}.{payload}.{b64(signature)}"
    assert_401(client.get("/api/playlists", **bearer(token)))
    assert fake.calls() == []


@pytest.mark.parametrize(
    "value", ["Bearer", "Bearer a b", "Basic dXNlcjpwYXNz", "Bearer not-a-jwt", "Bearer é"]
)
def test_malformed_authorization_is_401(fake, client, value):
    response = client.get("/api/playlists", HTTP_AUTHORIZATION=value)
    assert response.status_code == 401
    assert fake.calls() == []


def test_public_routes_need_no_token(fake, client):
    for method, path in [
        ("POST", "/api/auth/register"),
        ("POST", "/api/auth/login"),
        ("POST", "/api/auth/refresh"),
        ("GET", "/api/auth/.well-known/jwks.json"),
    ]:
        response = client.generic(method, path, b"{}", content_type="application/json")
        assert response.status_code == 200, path
    for path in ("/healthz", "/readyz", "/metrics"):
        assert client.get(path).status_code == 200, path


def test_public_route_ignores_a_bad_token(fake, client):
    response = client.post(
        "/api/auth/login",
        data=b"{}",
        content_type="application/json",
        HTTP_AUTHORIZATION="Bearer garbage",
    )
    assert response.status_code == 200


def test_other_auth_routes_need_a_token(fake, client):
    assert_401(client.get("/api/auth/me"), TOKEN_MISSING, "not_authenticated")
    assert_401(client.post("/api/auth/logout"), TOKEN_MISSING, "not_authenticated")
    assert_401(client.get("/api/auth/login"), TOKEN_MISSING, "not_authenticated")


def test_jwks_fetched_once_for_many_requests(fake, client, make_token):
    for _ in range(5):
        assert client.get("/api/playlists", **bearer(make_token())).status_code == 200
    assert fake.jwks_fetches == 1


@override_settings(JWKS_MIN_REFRESH_SECONDS=0)
def test_unknown_kid_refreshes_the_jwks(fake, client, make_token, rsa_key):
    assert client.get("/api/playlists", **bearer(make_token())).status_code == 200
    rotated = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    fake.jwks = {"keys": [jwk_of(rsa_key, KID), jwk_of(rotated, "rotated")]}
    token = make_token(kid="rotated", key=rotated)
    assert client.get("/api/playlists", **bearer(token)).status_code == 200
    assert fake.jwks_fetches == 2


def test_random_kids_cannot_hammer_the_auth_service(fake, client, make_token):
    assert client.get("/api/playlists", **bearer(make_token())).status_code == 200
    for i in range(10):
        assert_401(client.get("/api/playlists", **bearer(make_token(kid=f"random-{i}"))))
    assert fake.jwks_fetches <= 2  # the first load plus at most one refresh per interval


def test_auth_down_without_cached_keys_is_503(fake, client, make_token):
    dead = f"http://127.0.0.1:{free_port()}/api/auth/.well-known/jwks.json"
    with override_settings(JWKS_URL=dead):
        response = client.get("/api/playlists", **bearer(make_token()))
    assert response.status_code == 503
    assert response.json() == {"detail": KEYS_UNAVAILABLE, "code": "auth_keys_unavailable"}
    assert "Retry-After" in response


def test_cached_keys_survive_auth_going_down(fake, client, make_token):
    assert client.get("/api/playlists", **bearer(make_token())).status_code == 200
    fake.script = None
    fake.jwks = {"keys": []}  # a broken JWKS later must not drop the known key
    assert client.get("/api/playlists", **bearer(make_token())).status_code == 200


@pytest.mark.parametrize("method,path", [("post", "/api/auth/logout"), ("delete", "/api/auth/me")])
def test_logout_revokes_the_access_token_at_once(fake, client, make_token, method, path):
    token = make_token()
    fake.script = lambda r: Answer(204) if r.path == path else None
    assert client.get("/api/playlists", **bearer(token)).status_code == 200
    response = getattr(client, method)(
        path, data=b'{"refresh": "r"}', content_type="application/json", **bearer(token)
    )
    assert response.status_code == 204
    before = sample("gateway_revoked_token_hits_total")
    calls = len(fake.calls())
    assert_401(client.get("/api/playlists", **bearer(token)), TOKEN_REVOKED, "token_revoked")
    assert len(fake.calls()) == calls
    assert sample("gateway_revoked_token_hits_total") == before + 1
    issued_after = make_token(iat_ms=int(time.time() * 1000) + 1000)
    assert client.get("/api/playlists", **bearer(issued_after)).status_code == 200
    # Another token of the same user, issued before: works after a logout; after an account
    # deletion every session has ended (proxy.sessions, tests in test_sessions.py).
    other = client.get("/api/playlists", **bearer(make_token(iat=int(time.time()) - 5)))
    assert other.status_code == (200 if path.endswith("logout") else 401)


def test_failed_logout_revokes_nothing(fake, client, make_token):
    token = make_token()
    fake.script = lambda r: Answer(400, [("Content-Type", "application/json")], b"{}")
    assert client.post("/api/auth/logout", **bearer(token)).status_code == 400
    fake.script = None
    assert client.get("/api/playlists", **bearer(token)).status_code == 200


def test_default_jwks_lifetime_is_auths_max_age():
    from django.conf import settings

    assert settings.JWKS_CACHE_SECONDS == 300.0


@override_settings(JWKS_CACHE_SECONDS=0.5, JWKS_MIN_REFRESH_SECONDS=0.1)
def test_a_withdrawn_key_is_refused_once_the_jwks_expires(fake, client, make_token, rsa_key):
    """Auth rotates, then withdraws the previous key (``rotate_jwt_key --withdraw-previous``):
    it leaves the JWKS; tokens of it work only until the gateway's cached set expires."""
    new = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    fake.jwks = {"keys": [jwk_of(new, "new"), jwk_of(rsa_key, KID)]}
    old_token = make_token()  # signed by the previous key (KID)
    assert client.get("/api/playlists", **bearer(old_token)).status_code == 200
    fake.jwks = {"keys": [jwk_of(new, "new")]}  # withdrawn
    # Within the lifetime the cached set (and the remembered token) still answers ...
    assert client.get("/api/playlists", **bearer(old_token)).status_code == 200
    calls = len(fake.calls())
    time.sleep(0.7)
    # ... after it, the same (remembered) token and a fresh one of the withdrawn key are refused.
    assert_401(client.get("/api/playlists", **bearer(old_token)))
    assert_401(client.get("/api/playlists", **bearer(make_token())))
    assert len(fake.calls()) == calls  # nothing reached the upstream
    # Tokens of the current key keep working.
    assert client.get("/api/playlists", **bearer(make_token(kid="new", key=new))).status_code == 200


@override_settings(JWKS_CACHE_SECONDS=0.5, JWKS_MIN_REFRESH_SECONDS=0.4)
def test_a_stale_jwks_is_refetched_at_most_once_per_interval(fake, client, make_token):
    """The expiry refresh keeps the unknown-kid rate limit: random kids after expiry do not
    make a fetch each (one expiry refetch, no more within JWKS_MIN_REFRESH_SECONDS)."""
    assert client.get("/api/playlists", **bearer(make_token())).status_code == 200
    time.sleep(0.6)
    for i in range(10):
        assert_401(client.get("/api/playlists", **bearer(make_token(kid=f"random-{i}"))))
    assert fake.jwks_fetches == 2


BROKEN_JWKS = [{"keys": []}, [], {"keys": [{"kty": "RSA"}]}]


@override_settings(JWKS_CACHE_SECONDS=0.2, JWKS_MIN_REFRESH_SECONDS=0.3)
@pytest.mark.parametrize("broken", BROKEN_JWKS)
def test_a_stale_set_is_served_while_auth_answers_a_broken_jwks(fake, client, make_token, broken):
    """Past its lifetime the set is refetched; a broken answer keeps the old keys, and the failed
    attempt counts for JWKS_MIN_REFRESH_SECONDS (one fetch, not one per request)."""
    assert client.get("/api/playlists", **bearer(make_token())).status_code == 200
    fake.jwks = broken
    time.sleep(0.35)
    for _ in range(5):
        assert client.get("/api/playlists", **bearer(make_token())).status_code == 200
    assert fake.jwks_fetches == 2


@pytest.mark.parametrize("broken", BROKEN_JWKS)
def test_a_broken_jwks_without_cached_keys_is_503(fake, client, make_token, broken):
    fake.jwks = broken
    response = client.get("/api/playlists", **bearer(make_token()))
    assert response.status_code == 503
    assert response.json()["code"] == "auth_keys_unavailable"
