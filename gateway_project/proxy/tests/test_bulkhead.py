"""The per-upstream bulkhead (proxy/breaker.py): a hung upstream holds at most its slots."""

from __future__ import annotations

import threading
import time

import pytest
from django.test import override_settings

from proxy import upstreams
from proxy.breaker import BreakerOpenError, Bulkhead


def hold(bulkhead: Bulkhead, release: threading.Event, entered: threading.Semaphore):
    def run():
        with bulkhead.admit():
            entered.release()
            release.wait(10)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def fill(bulkhead: Bulkhead, release: threading.Event) -> list[threading.Thread]:
    entered = threading.Semaphore(0)
    threads = [hold(bulkhead, release, entered) for _ in range(bulkhead.limit)]
    for _ in threads:
        assert entered.acquire(timeout=5)
    return threads


def test_a_call_over_the_limit_is_refused_once_the_calls_in_flight_are_slow():
    bulkhead = Bulkhead(limit=2, slow_after=0.2)
    release = threading.Event()
    threads = fill(bulkhead, release)
    try:
        started = time.monotonic()
        with pytest.raises(BreakerOpenError) as refused, bulkhead.admit():
            pass
        # It waited for a slot while the calls in flight were young, not longer.
        assert time.monotonic() - started >= 0.15
        assert refused.value.retry_after == 1
        # Still slow: the next one is refused without waiting.
        with pytest.raises(BreakerOpenError), bulkhead.admit():
            pass
    finally:
        release.set()
        for thread in threads:
            thread.join()
    with bulkhead.admit():  # the slots are free again
        pass


def test_a_call_over_the_limit_gets_the_slot_a_quick_call_frees():
    bulkhead = Bulkhead(limit=1, slow_after=5.0)
    release = threading.Event()
    threads = fill(bulkhead, release)
    threading.Timer(0.1, release.set).start()
    with bulkhead.admit():  # waits for the slot instead of failing
        pass
    for thread in threads:
        thread.join()


def test_no_limit_admits_everyone():
    bulkhead = Bulkhead(limit=0, slow_after=0.0)
    with bulkhead.admit(), bulkhead.admit(), bulkhead.admit():
        pass


@override_settings(UPSTREAM_MAX_IN_FLIGHT=3, UPSTREAM_SLOW_SECONDS=2.5)
def test_every_upstream_breaker_has_the_configured_bulkhead():
    bulkhead = upstreams.get("playlist").breaker.bulkhead
    assert (bulkhead.limit, bulkhead.slow_after) == (3, 2.5)
