"""Hot-path shortcuts (docs/performance.md): the per-worker breaker state cache, the pipelined
throttle counter and the benchmark-only floor endpoint (off by default)."""

from __future__ import annotations

import importlib
import uuid

import pytest
import redis
from django.conf import settings
from django.core.cache import cache
from django.test import Client, override_settings
from django.urls import clear_url_caches

from proxy import upstreams
from proxy.breaker import BreakerOpenError, UpstreamBreaker, UpstreamServerError
from proxy.tests.fake_upstream import Answer
from proxy.throttling import GatewayUserThrottle

FAIL_MAX = 3  # failures in a row that open these breakers (3 calls, all failed)


def cached_workers(shared_redis, seconds=60.0):
    client, namespace = shared_redis
    return [
        UpstreamBreaker(
            name="playlist",
            failure_rate=0.5,
            min_calls=FAIL_MAX,
            window_seconds=10,
            reset_timeout=60.0,
            redis=redis.Redis(connection_pool=client.connection_pool),
            namespace=namespace,
            probe_ttl=10,
            state_cache_seconds=seconds,
        )
        for _ in range(2)
    ]


def fail():
    raise UpstreamServerError(Answer(503))


def test_cached_closed_state_skips_redis_until_it_expires(shared_redis):
    worker_a, worker_b = cached_workers(shared_redis)
    assert worker_b.call(lambda: "warm") == "warm"  # reads "closed, 0" and caches it
    for _ in range(FAIL_MAX):
        with pytest.raises(UpstreamServerError):
            worker_a.call(fail)
    assert worker_b.current_state == "open"
    # Within its cache lifetime worker b still lets a call through (the documented lag) ...
    assert worker_b.call(lambda: "cached") == "cached"
    # ... and once it has expired it sees the trip made by worker a.
    worker_b._closed_until = 0.0
    called = []
    with pytest.raises(BreakerOpenError):
        worker_b.call(lambda: called.append(1))
    assert called == []


def test_own_failures_drop_the_cached_state_at_once(shared_redis):
    (worker,) = cached_workers(shared_redis)[:1]
    assert worker.call(lambda: "warm") == "warm"
    for _ in range(FAIL_MAX - 1):  # with the warm call: 3 calls, 2 failed
        with pytest.raises(UpstreamServerError):
            worker.call(fail)
    called = []
    with pytest.raises(BreakerOpenError):
        worker.call(lambda: called.append(1))
    assert called == [] and worker.current_state == "open"


def test_gateway_breakers_use_the_state_cache(fake):
    with override_settings(BREAKER_STATE_CACHE_SECONDS=0.25):
        assert upstreams.get("playlist").breaker._state_cache_seconds == 0.25


def test_pipelined_counter_counts_and_expires_with_its_window():
    throttle = GatewayUserThrottle()
    throttle.duration = 60
    key = f"throttle_test_{uuid.uuid4().hex}:1"
    assert [throttle._hit(key) for _ in range(3)] == [1, 2, 3]
    assert cache.get(key) == 3
    assert 0 < cache.ttl(key) <= 61  # type: ignore[attr-defined]


def test_bench_endpoint_is_off_by_default(fake, auth_headers):
    assert settings.GATEWAY_BENCH_ENDPOINTS is False
    assert "gateway_bench" not in settings.INSTALLED_APPS
    assert Client().get("/bench/floor", **auth_headers).status_code == 404


def test_bench_endpoint_is_routed_when_enabled(fake, auth_headers):
    """GATEWAY_BENCH_ENDPOINTS=true: /bench/floor answers, behind the gateway's JWT check."""
    import gateway_project.urls as root

    try:
        with override_settings(GATEWAY_BENCH_ENDPOINTS=True):
            importlib.reload(root)
            clear_url_caches()
            response = Client().get("/bench/floor", **auth_headers)
            assert response.status_code == 200
            assert response.json() == {"ok": True, "items": []}
            assert Client().get("/bench/floor").status_code == 401
    finally:
        importlib.reload(root)
        clear_url_caches()
    assert Client().get("/bench/floor", **auth_headers).status_code == 404


def test_revocation_read_also_counts_the_caller_once():
    from proxy import revocation, throttling

    user = f"u{uuid.uuid4().hex[:8]}"
    jti = uuid.uuid4().hex
    with override_settings(GATEWAY_USER_RATE="100/min"):
        assert revocation.token_is_revoked(jti=jti, user_id=user) is False
        key, ttl = throttling.user_window(user_id=user)  # type: ignore[misc]
        assert cache.get(key) == 1 and 0 < cache.ttl(key) <= ttl  # type: ignore[attr-defined]
        # The user throttle takes the count of this request instead of counting again ...
        assert GatewayUserThrottle()._hit(key) == 1
        assert cache.get(key) == 1
        # ... once: the next request without a prefetched count increments as before.
        assert GatewayUserThrottle()._hit(key) == 2
        revocation.token_revoke(jti=jti, exp=9_999_999_999)
        assert revocation.token_is_revoked(jti=jti, user_id=user) is True


def test_revocation_script_is_loaded_again_when_redis_forgot_it():
    """After a Redis restart or SCRIPT FLUSH, EVALSHA fails with NOSCRIPT: redis-py loads the
    script and the check still answers (simulated with a digest Redis never saw, so the shared
    server's scripts are left alone)."""
    from proxy import revocation, throttling

    user = f"u{uuid.uuid4().hex[:8]}"
    known = revocation._REVOKED_AND_COUNT.sha
    revocation._REVOKED_AND_COUNT.sha = "0" * 40
    try:
        with override_settings(GATEWAY_USER_RATE="100/min"):
            assert revocation.token_is_revoked(jti=uuid.uuid4().hex, user_id=user) is False
            key, _ = throttling.user_window(user_id=user)  # type: ignore[misc]
            assert cache.get(key) == 1
        assert revocation._REVOKED_AND_COUNT.sha == known
    finally:
        revocation._REVOKED_AND_COUNT.sha = known


def test_revocation_read_fails_closed_when_redis_is_down():
    from proxy import revocation
    from proxy.exceptions import RevocationUnavailable

    caches = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
        }
    }
    with override_settings(CACHES=caches), pytest.raises(RevocationUnavailable):
        revocation.token_is_revoked(jti="x", user_id="1")
