"""Throttling, CORS, readiness, metrics, and the gateway's behaviour with its cache down."""

from __future__ import annotations

import jwt
from django.core.cache import cache
from django.test import override_settings
from prometheus_client import REGISTRY

from proxy.exceptions import REVOCATION_UNAVAILABLE
from proxy.revocation import REVOKED_KEY
from proxy.tests.fake_upstream import Answer

DEAD_CACHE = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": "redis://127.0.0.1:1/0",
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
    }
}


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@override_settings(GATEWAY_ANON_RATE="2/min")
def test_anonymous_callers_throttled_per_ip_with_retry_after(fake, client):
    before = sample("gateway_rejected_requests_total", reason="throttled")
    login = {"path": "/api/auth/login", "data": b"{}", "content_type": "application/json"}
    assert client.post(**login, REMOTE_ADDR="198.51.100.1").status_code == 200
    assert client.post(**login, REMOTE_ADDR="198.51.100.1").status_code == 200
    response = client.post(**login, REMOTE_ADDR="198.51.100.1")
    assert response.status_code == 429
    assert response.json()["code"] == "throttled"
    assert 1 <= int(response["Retry-After"]) <= 60
    assert len(fake.calls()) == 2
    assert sample("gateway_rejected_requests_total", reason="throttled") == before + 1
    # Another IP has its own budget; X-Forwarded-For cannot fake one (no trusted proxy).
    assert client.post(**login, REMOTE_ADDR="198.51.100.2").status_code == 200
    spoofed = client.post(**login, REMOTE_ADDR="198.51.100.1", HTTP_X_FORWARDED_FOR="1.2.3.4")
    assert spoofed.status_code == 429


@override_settings(GATEWAY_USER_RATE="2/min")
def test_authenticated_callers_throttled_per_user(fake, client, make_token):
    alice = {"HTTP_AUTHORIZATION": f"Bearer {make_token()}"}
    for _ in range(2):
        assert client.get("/api/playlists", **alice).status_code == 200
    response = client.get("/api/playlists", **alice)
    assert response.status_code == 429
    assert "Retry-After" in response
    # The limit follows the user, not the IP: a second token of alice is throttled too...
    other_token = {"HTTP_AUTHORIZATION": f"Bearer {make_token()}"}
    assert client.get("/api/playlists", **other_token).status_code == 429
    # ...while bob from the same IP is not.
    bob = {"HTTP_AUTHORIZATION": f"Bearer {make_token(user_id='7', username='bob')}"}
    assert client.get("/api/playlists", **bob).status_code == 200


@override_settings(CORS_ALLOWED_ORIGINS=["https://app.example"])
def test_cors_preflight_and_headers(fake, client, auth_headers):
    preflight = client.options(
        "/api/playlists",
        HTTP_ORIGIN="https://app.example",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type",
    )
    assert preflight.status_code == 200
    assert preflight["Access-Control-Allow-Origin"] == "https://app.example"
    assert fake.calls() == []  # answered by the gateway
    response = client.get("/api/playlists", HTTP_ORIGIN="https://app.example", **auth_headers)
    assert response["Access-Control-Allow-Origin"] == "https://app.example"
    assert "X-Request-ID" in response["Access-Control-Expose-Headers"]
    other = client.get("/api/playlists", HTTP_ORIGIN="https://evil.example", **auth_headers)
    assert "Access-Control-Allow-Origin" not in other


def test_readyz_ignores_dead_upstreams(fake, client):
    fake.stop()
    response = client.get("/readyz")
    assert response.status_code == 200
    assert set(response.json()["checks"]) == {"cache"}


def test_metrics_expose_the_gateway_families(fake, client, auth_headers):
    client.get("/api/playlists", **auth_headers)
    client.get("/api/playlists")
    text = client.get("/metrics").content.decode()
    for name in (
        "gateway_upstream_requests_total",
        "gateway_upstream_request_duration_seconds_bucket",
        "gateway_breaker_state",
        "gateway_rejected_requests_total",
        "gateway_revoked_token_hits_total",
        "django_http_responses_total_by_status_view_method_total",
    ):
        assert name in text, name


# -- the gateway's cache down ------------------------------------------------------------------


@override_settings(CACHES=DEAD_CACHE)
def test_cache_down_readyz_503(client):
    assert client.get("/readyz").status_code == 503


@override_settings(CACHES=DEAD_CACHE, GATEWAY_ANON_RATE="1/min")
def test_cache_down_throttling_lets_requests_through(fake, client):
    for _ in range(3):
        response = client.post("/api/auth/login", data=b"{}", content_type="application/json")
        assert response.status_code == 200


@override_settings(CACHES=DEAD_CACHE)
def test_cache_down_token_check_fails_closed(fake, client, auth_headers):
    response = client.get("/api/playlists", **auth_headers)
    assert response.status_code == 503
    assert response.json() == {"detail": REVOCATION_UNAVAILABLE, "code": "revocation_unavailable"}
    assert fake.calls() == []


def test_revocation_shared_through_redis(fake, client, make_token):
    token = make_token()
    fake.script = lambda r: Answer(204) if r.path == "/api/auth/logout" else None
    assert client.post("/api/auth/logout", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 204
    assert client.get("/api/playlists", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 401
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    # Kept in Redis for the token's remaining lifetime (300 s in the factory), no longer.
    ttl = cache.ttl(REVOKED_KEY.format(jti=jti))  # type: ignore[attr-defined]
    assert 0 < ttl <= 302
