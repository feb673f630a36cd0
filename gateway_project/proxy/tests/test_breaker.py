"""Circuit breakers: what counts, the failure-rate window, reject without calling, one probe in
half-open, close, Redis sharing.

Time never passes in these tests: "reset_timeout elapsed" is played by setting the breaker's
``reset_timeout`` to 0 once it has opened, and the window's clock is replaced where it matters.
"""

from __future__ import annotations

import logging
import threading

import pytest
import redis
import requests
from django.test import Client, override_settings
from prometheus_client import REGISTRY
from redis.backoff import NoBackoff
from redis.retry import Retry

from proxy import breaker as breaker_module
from proxy import upstreams
from proxy.breaker import (
    BreakerOpenError,
    RedisStorage,
    UpstreamBreaker,
    UpstreamServerError,
)
from proxy.exceptions import UPSTREAM_UNAVAILABLE
from proxy.tests.fake_upstream import Answer

FAIL_MAX = 3  # conftest's BREAKER_MIN_CALLS: 3 failed calls in a row open a breaker there


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def failing(record):
    return Answer(503, [("Content-Type", "application/json")], b'{"detail":"down"}')


def trip(client, headers, fake, path="/api/playlists"):
    fake.script = failing
    for _ in range(FAIL_MAX):
        assert client.get(path, **headers).status_code == 503


def elapse_reset_timeout(name="playlist"):
    upstreams.get(name).breaker.reset_timeout = 0


def test_failing_upstream_opens_breaker_then_503_without_calling_upstream(
    fake, client, auth_headers
):
    assert isinstance(upstreams.get("playlist").breaker.storage, RedisStorage)
    before = sample("gateway_rejected_requests_total", reason="breaker_open")
    trip(client, auth_headers, fake)
    assert len(fake.calls()) == FAIL_MAX
    response = client.get("/api/playlists", **auth_headers)
    assert response.status_code == 503
    assert response.json() == {"detail": UPSTREAM_UNAVAILABLE, "code": "upstream_unavailable"}
    assert 1 <= int(response["Retry-After"]) <= 60
    assert len(fake.calls()) == FAIL_MAX  # the upstream was not called
    assert sample("gateway_rejected_requests_total", reason="breaker_open") == before + 1
    assert sample("gateway_breaker_state", upstream="playlist") == 2
    # Other upstreams keep their own closed breaker (the upstream's own 503 comes through).
    other = client.get("/api/analysis", **auth_headers)
    assert other.status_code == 503 and other.json() == {"detail": "down"}


def test_connection_errors_and_timeouts_count_as_failures(fake, client, auth_headers):
    fake.script = lambda r: Answer(200, [], b"late", delay=1.5)
    assert client.get("/api/playlists", **auth_headers).status_code == 504
    fake.stop()
    assert client.get("/api/playlists", **auth_headers).status_code == 502
    assert client.get("/api/playlists", **auth_headers).status_code == 502
    assert client.get("/api/playlists", **auth_headers).status_code == 503


def test_4xx_never_trips_the_breaker(fake, client, auth_headers):
    fake.script = lambda r: Answer(404, [("Content-Type", "application/json")], b"{}")
    for _ in range(FAIL_MAX * 3):
        assert client.get("/api/playlists/x", **auth_headers).status_code == 404
    assert len(fake.calls()) == FAIL_MAX * 3
    assert upstreams.get("playlist").breaker.current_state == "closed"


@pytest.mark.parametrize("status", [502, 504])
def test_502_and_504_answers_count_as_failures(fake, client, auth_headers, status):
    fake.script = lambda r: Answer(status, [], b"")
    assert [client.get("/api/playlists", **auth_headers).status_code for _ in range(4)] == [
        status,
        status,
        status,
        503,  # the breaker's own, without calling the upstream
    ]
    assert len(fake.calls()) == FAIL_MAX


def test_500_answers_pass_through_and_never_open_the_breaker(fake, client, auth_headers):
    """A 500 says "this request broke the service", which one client can provoke at will."""
    fake.script = lambda r: Answer(500, [("Content-Type", "application/json")], b'{"x": 1}')
    for _ in range(FAIL_MAX * 10):
        response = client.get("/api/playlists", **auth_headers)
        assert response.status_code == 500 and response.json() == {"x": 1}
    assert len(fake.calls()) == FAIL_MAX * 10
    assert upstreams.get("playlist").breaker.current_state == "closed"


def test_successes_keep_the_failure_rate_below_the_threshold(fake, client, auth_headers):
    expected = [200, 200, 503, 200, 200, 503, 200, 503, 200]  # never 50 % failed
    outcomes = iter(expected)
    fake.script = lambda r: Answer(next(outcomes), [], b"")
    statuses = [client.get("/api/playlists", **auth_headers).status_code for _ in expected]
    assert statuses == expected
    assert upstreams.get("playlist").breaker.current_state == "closed"


@override_settings(BREAKER_MIN_CALLS=20, BREAKER_FAILURE_RATE=0.5)
def test_twenty_calls_half_connection_failures_open_the_breaker(fake, client, auth_headers):
    for _ in range(10):
        assert client.get("/api/playlists", **auth_headers).status_code == 200
    fake.stop()  # from now on: connection refused
    for _ in range(9):  # 19 calls, 9 failed
        assert client.get("/api/playlists", **auth_headers).status_code == 502
    assert upstreams.get("playlist").breaker.current_state == "closed"
    assert client.get("/api/playlists", **auth_headers).status_code == 502  # 20 calls, 10 failed
    assert upstreams.get("playlist").breaker.current_state == "open"
    response = client.get("/api/playlists", **auth_headers)
    assert response.status_code == 503 and response.json()["code"] == "upstream_unavailable"


@override_settings(BREAKER_MIN_CALLS=20, BREAKER_FAILURE_RATE=0.5)
def test_nineteen_calls_never_open_the_breaker_whatever_failed(fake, client, auth_headers):
    for _ in range(9):
        assert client.get("/api/playlists", **auth_headers).status_code == 200
    fake.stop()
    for _ in range(10):  # 19 calls, 10 (53 %) failed: too few calls to judge
        assert client.get("/api/playlists", **auth_headers).status_code == 502
    assert upstreams.get("playlist").breaker.current_state == "closed"


def test_failures_spread_over_more_than_the_window_do_not_open(shared_redis, monkeypatch):
    clock = [1_000_000.0]
    monkeypatch.setattr(breaker_module, "_now", lambda: clock[0])
    (worker,) = two_workers(shared_redis, min_calls=4)[:1]
    for _ in range(3):  # 3 calls, all failed: below the minimum
        with pytest.raises(requests.ConnectionError):
            worker.call(refused)
    clock[0] += 10  # the window is 10 s: those 3 have left it
    for _ in range(3):
        with pytest.raises(requests.ConnectionError):
            worker.call(refused)
    assert worker.current_state == "closed"
    clock[0] += 9  # still inside the window of the last three: the fourth opens it
    with pytest.raises(requests.ConnectionError):
        worker.call(refused)
    assert worker.current_state == "open"


def test_successes_counted_locally_reach_the_shared_window(shared_redis, monkeypatch):
    clock = [2_000_000.0]
    monkeypatch.setattr(breaker_module, "_now", lambda: clock[0])
    worker_a, worker_b = two_workers(shared_redis, min_calls=4)
    for _ in range(6):
        assert worker_a.call(lambda: "ok") == "ok"
    clock[0] += 1  # worker a's next call hands its 6 calls of the last second to Redis
    assert worker_a.call(lambda: "ok") == "ok"
    for _ in range(4):  # worker b: 4 failures of 10 calls in the window (without a's: 4 of 4)
        with pytest.raises(UpstreamServerError):
            worker_b.call(fail)
    assert worker_b.current_state == "closed"
    with pytest.raises(UpstreamServerError):  # 5 of 11: 45 %
        worker_b.call(fail)
    assert worker_b.current_state == "closed"
    with pytest.raises(UpstreamServerError):  # 6 of 12: 50 %
        worker_b.call(fail)
    assert worker_a.current_state == worker_b.current_state == "open"


def test_half_open_admits_exactly_one_probe_under_concurrency(fake, auth_headers):
    client = Client()
    trip(client, auth_headers, fake)
    elapse_reset_timeout()
    gate = threading.Event()
    fake.script = lambda r: Answer(200, [("Content-Type", "text/plain")], b"back", gate=gate)
    callers = 8
    barrier = threading.Barrier(callers)
    statuses: list[int] = []
    done = threading.Condition()

    def call() -> None:
        local = Client()  # one client per thread
        barrier.wait()
        status = local.get("/api/playlists", **auth_headers).status_code
        with done:
            statuses.append(status)
            done.notify_all()

    threads = [threading.Thread(target=call) for _ in range(callers)]
    for thread in threads:
        thread.start()
    with done:
        # Everyone but the probe is refused while the probe is held at the upstream.
        assert done.wait_for(lambda: len(statuses) == callers - 1, timeout=10)
    assert statuses == [503] * (callers - 1)
    assert fake.wait_for_calls(FAIL_MAX + 1)  # the probe may still be on its way
    assert len(fake.calls()) == FAIL_MAX + 1
    gate.set()
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(statuses) == [200] + [503] * (callers - 1)
    assert len(fake.calls()) == FAIL_MAX + 1  # exactly one probe reached the upstream
    assert upstreams.get("playlist").breaker.current_state == "closed"


def test_probe_success_closes_and_traffic_flows(fake, client, auth_headers, caplog):
    before = sample(
        "gateway_breaker_transitions_total",
        upstream="playlist",
        from_state="half-open",
        to_state="closed",
    )
    with caplog.at_level(logging.WARNING, logger="proxy.breaker"):
        trip(client, auth_headers, fake)
        elapse_reset_timeout()
        fake.script = None
        assert client.get("/api/playlists", **auth_headers).status_code == 200
    assert upstreams.get("playlist").breaker.current_state == "closed"
    assert sample("gateway_breaker_state", upstream="playlist") == 0
    assert (
        sample(
            "gateway_breaker_transitions_total",
            upstream="playlist",
            from_state="half-open",
            to_state="closed",
        )
        == before + 1
    )
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "circuit breaker playlist: closed -> open" in messages
    assert "circuit breaker playlist: open -> half-open" in messages
    assert "circuit breaker playlist: half-open -> closed" in messages
    for _ in range(FAIL_MAX + 1):
        assert client.get("/api/playlists", **auth_headers).status_code == 200


def test_probe_failure_reopens(fake, client, auth_headers):
    trip(client, auth_headers, fake)
    breaker = upstreams.get("playlist").breaker
    elapse_reset_timeout()
    assert client.get("/api/playlists", **auth_headers).status_code == 503  # the probe
    assert len(fake.calls()) == FAIL_MAX + 1
    assert breaker.current_state == "open"
    breaker.reset_timeout = 60
    calls = len(fake.calls())
    assert client.get("/api/playlists", **auth_headers).status_code == 503
    assert len(fake.calls()) == calls


# -- two gateway workers sharing one breaker through the real Redis ---------------------------


def two_workers(shared_redis, reset_timeout=60.0, min_calls=FAIL_MAX):
    client, namespace = shared_redis
    return [
        UpstreamBreaker(
            name="playlist",
            failure_rate=0.5,
            min_calls=min_calls,
            window_seconds=10,
            reset_timeout=reset_timeout,
            redis=redis.Redis(connection_pool=client.connection_pool),
            namespace=namespace,
            probe_ttl=10,
        )
        for _ in range(2)
    ]


def fail():
    raise UpstreamServerError(Answer(503))


def refused():
    raise requests.ConnectionError("connection refused")


def test_two_workers_agree_on_state_through_redis(shared_redis):
    worker_a, worker_b = two_workers(shared_redis)
    for _ in range(FAIL_MAX):
        with pytest.raises(UpstreamServerError):
            worker_a.call(fail)
    called = []
    with pytest.raises(BreakerOpenError) as refused:
        worker_b.call(lambda: called.append(1))
    assert called == [] and refused.value.retry_after >= 1
    assert worker_b.current_state == "open"


def test_failures_of_two_workers_add_up(shared_redis):
    worker_a, worker_b = two_workers(shared_redis)
    for worker in (worker_a, worker_b, worker_a):
        with pytest.raises(UpstreamServerError):
            worker.call(fail)
    assert worker_b.current_state == "open"


def test_one_probe_across_two_workers(shared_redis):
    worker_a, worker_b = two_workers(shared_redis)
    for _ in range(FAIL_MAX):
        with pytest.raises(UpstreamServerError):
            worker_a.call(fail)
    worker_a.reset_timeout = worker_b.reset_timeout = 0
    gate = threading.Event()
    probes: list[str] = []
    refused: list[str] = []
    callers = 6
    barrier = threading.Barrier(callers)
    lock = threading.Lock()

    def probe():
        with lock:
            probes.append("x")
        gate.wait(10)
        return "ok"

    def caller(worker):
        barrier.wait()
        try:
            worker.call(probe)
        except BreakerOpenError:
            with lock:
                refused.append("x")

    threads = [
        threading.Thread(target=caller, args=((worker_a, worker_b)[i % 2],)) for i in range(callers)
    ]
    for thread in threads:
        thread.start()
    for _ in range(500):  # the losers are refused at once; allow a loaded machine 10 s
        with lock:
            if len(refused) == callers - 1:
                break
        threading.Event().wait(0.02)
    gate.set()
    for thread in threads:
        thread.join(timeout=10)
    assert len(probes) == 1
    assert len(refused) == callers - 1
    assert worker_a.current_state == worker_b.current_state == "closed"


def test_redis_down_breaker_acts_closed():
    breaker = UpstreamBreaker(
        name="playlist",
        failure_rate=0.5,
        min_calls=FAIL_MAX,
        window_seconds=10,
        reset_timeout=60,
        redis=redis.Redis(
            host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
        ),
        namespace="mstest-unreachable",
        probe_ttl=5,
    )
    assert breaker.call(lambda: "through") == "through"
