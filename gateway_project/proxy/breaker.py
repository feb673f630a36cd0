"""One circuit breaker per upstream, shared by every request (and, through Redis, every worker).

Design decisions:

* **pybreaker for state, our own admission.** ``pybreaker.CircuitBreaker.call`` holds one
  process-wide lock for the whole guarded call, which would serialise every proxied request of a
  worker. ``UpstreamBreaker.call`` therefore reads the state itself (one Redis round trip for
  state and failure counter together) and calls the upstream without any lock; transitions still
  go through pybreaker's ``open()`` / ``half_open()`` / ``close()`` so its storage layout
  (``CircuitRedisStorage``) and its listeners are used unchanged.
* **Exactly one probe in half-open.** pybreaker lets every concurrent caller through once
  ``reset_timeout`` has passed. Here a caller must first win a probe lock: a Redis
  ``SET NX PX`` lock (redis-py ``Lock``, released by token so a late probe cannot free a newer
  one) named after the upstream, so one probe runs across all gateway workers. Losers get 503
  at once. The lock expires after the probe's
  own timeout, so a worker that dies mid-probe cannot wedge the breaker in half-open. The
  probe's success closes the breaker, its failure re-opens it for another ``reset_timeout``.
* **What counts as a failure:** connection errors, timeouts and 5xx answers only (see
  ``is_failure``); a 4xx is the caller's problem and never trips the breaker.
* **Closed state cached per worker.** With ``state_cache_seconds`` > 0 (the gateway uses
  ``BREAKER_STATE_CACHE_SECONDS``, 0.5 s by default) a worker that read "closed, no failures"
  trusts that answer for that long instead of asking Redis on every request (one Redis round
  trip less per proxied request; see docs/performance.md). A failure this worker sees drops
  the cached answer at once (its counting and tripping always go to Redis), so only a trip
  made by *another* worker reaches this one up to ``state_cache_seconds`` late. Open and
  half-open are never cached.
* **Redis down:** the breaker behaves as closed (requests go through and succeed or fail on
  their own), logged as a warning at most every few seconds, and asks Redis again only after a
  short back-off so a black-holed Redis does not add its timeout to every request; it never
  turns a Redis outage into an outage of every upstream.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import pybreaker
import requests
from redis import Redis
from redis.exceptions import LockError, RedisError

from proxy import metrics

logger = logging.getLogger(__name__)

T = TypeVar("T")

CLOSED = pybreaker.STATE_CLOSED
OPEN = pybreaker.STATE_OPEN
HALF_OPEN = pybreaker.STATE_HALF_OPEN

# How long a caller that lost the probe race is told to wait.
PROBE_BUSY_RETRY_AFTER = 1
_REDIS_WARN_EVERY = 10.0
_REDIS_BACKOFF = 2.0  # seconds the breaker acts closed without asking Redis after an error


class UpstreamServerError(Exception):
    """The upstream answered 5xx: a breaker failure whose response is still passed through."""

    def __init__(self, response: Any) -> None:
        super().__init__(f"upstream answered {getattr(response, 'status', '?')}")
        self.response = response


class BreakerOpenError(pybreaker.CircuitBreakerError):
    """The breaker refuses the call; ``retry_after`` is in whole seconds (at least 1)."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)


def is_failure(exc: BaseException) -> bool:
    """Connection errors, timeouts and 5xx answers count; nothing else does."""
    return isinstance(exc, requests.ConnectionError | requests.Timeout | UpstreamServerError)


class RedisStorage(pybreaker.CircuitRedisStorage):
    """pybreaker's Redis storage plus a one-round-trip snapshot and quiet Redis failures."""

    _last_warning = 0.0
    _down_until = 0.0

    def _initialize_redis_state(self, state: str) -> None:
        try:
            super()._initialize_redis_state(state)
        except RedisError as exc:
            self._warn(exc)

    def _warn(self, exc: Exception) -> None:
        now = time.monotonic()
        self._down_until = now + _REDIS_BACKOFF
        if now - self._last_warning > _REDIS_WARN_EVERY:
            self._last_warning = now
            logger.warning(
                "breaker storage %s unreachable, acting closed: %s", self._namespace_name, exc
            )

    def snapshot(self) -> tuple[str, int]:
        if self._down_until and time.monotonic() < self._down_until:
            # Redis failed moments ago: don't make every request wait for its timeout again.
            return self._fallback_circuit_state, 0
        try:
            state, counter = self._redis.mget(
                self._namespace("state"), self._namespace("fail_counter")
            )
        except RedisError as exc:
            self._warn(exc)
            return self._fallback_circuit_state, 0
        if state is None:
            self._initialize_redis_state(self._fallback_circuit_state)
            return self._fallback_circuit_state, 0
        if isinstance(state, bytes):
            state = state.decode()
        return str(state), int(counter or 0)

    def increment_and_get(self) -> int:
        try:
            return int(self._redis.incr(self._namespace("fail_counter")))
        except RedisError as exc:
            self._warn(exc)
            return 0

    def keys(self) -> list[str]:
        """Every key this storage may write (tests clean them up)."""
        return [
            self._namespace(k) for k in ("state", "fail_counter", "success_counter", "opened_at")
        ]


class _RedisProbeLock:
    def __init__(self, redis: Redis, name: str, ttl: float) -> None:
        self._lock = redis.lock(name, timeout=ttl, blocking=False, thread_local=False)

    def acquire(self) -> bool:
        try:
            return bool(self._lock.acquire(blocking=False))
        except RedisError:
            # Redis down: the state read already fell back to closed; let this caller through.
            return True

    def release(self) -> None:
        # Expired (probe slower than its ttl) or Redis gone: nothing left to free.
        with contextlib.suppress(LockError, RedisError):
            self._lock.release()


class MetricsListener(pybreaker.CircuitBreakerListener):
    """Logs every transition at WARNING, counts it and updates the state gauge."""

    def state_change(
        self,
        cb: pybreaker.CircuitBreaker,
        old_state: pybreaker.CircuitBreakerState | None,
        new_state: pybreaker.CircuitBreakerState,
    ) -> None:
        old = old_state.name if old_state is not None else "none"
        new = new_state.name
        if old == new:
            return
        upstream = cb.name or "unknown"
        logger.warning(
            "circuit breaker %s: %s -> %s",
            upstream,
            old,
            new,
            extra={"upstream": upstream, "from_state": old, "to_state": new},
        )
        metrics.breaker_transitions.labels(upstream=upstream, from_state=old, to_state=new).inc()
        metrics.breaker_state.labels(upstream=upstream).set(
            metrics.BREAKER_STATE_VALUES.get(new, 0)
        )


class UpstreamBreaker(pybreaker.CircuitBreaker):
    """A pybreaker ``CircuitBreaker`` whose ``call`` admits one probe and never serialises.

    ``call(func)`` raises ``BreakerOpenError`` without calling ``func`` while open (or while
    another caller probes); otherwise it calls ``func`` and records the outcome. ``func`` must
    raise ``UpstreamServerError`` for a 5xx answer so that it counts as a failure.
    """

    def __init__(
        self,
        *,
        name: str,
        fail_max: int,
        reset_timeout: float,
        redis: Redis,
        namespace: str,
        probe_ttl: float = 30.0,
        state_cache_seconds: float = 0.0,
    ) -> None:
        storage = RedisStorage(CLOSED, redis, namespace=namespace)
        key = f"{namespace}:pybreaker:probe"
        self._new_probe_lock: Callable[[], _RedisProbeLock] = lambda: _RedisProbeLock(
            redis, key, probe_ttl
        )
        super().__init__(
            fail_max=fail_max,
            reset_timeout=reset_timeout,
            name=name,
            state_storage=storage,
            listeners=[MetricsListener()],
            throw_new_error_on_trip=False,
        )
        self.storage = storage
        self._gauge = metrics.breaker_state.labels(upstream=name)
        self._gauge_value = -1
        self._state_cache_seconds = state_cache_seconds
        self._closed_until = 0.0  # monotonic time until which "closed, 0 failures" is trusted
        self._observe(storage.snapshot()[0])

    # -- helpers -----------------------------------------------------------------------------

    def _observe(self, state: str) -> None:
        """Keep this worker's gauge on the state it last saw (cheap: only on change)."""
        value = metrics.BREAKER_STATE_VALUES.get(state, 0)
        if value != self._gauge_value:
            self._gauge_value = value
            self._gauge.set(value)

    def _sync(self, state: str) -> None:
        """Align the cached pybreaker state object with storage, without notifying listeners,
        so a transition this worker makes is reported from the real previous state."""
        with self._lock:
            if self._state.name != state:
                self._state = self._create_new_state(state, notify=False)

    def _open_remaining(self) -> float:
        opened_at = self.storage.opened_at
        if opened_at is None:
            return 0.0
        elapsed = (datetime.now(UTC) - opened_at).total_seconds()
        return self.reset_timeout - elapsed

    def _trip(self, from_state: str) -> None:
        self._sync(from_state)
        self.open()
        self._observe(OPEN)

    # -- the call ----------------------------------------------------------------------------

    def _snapshot(self) -> tuple[str, int]:
        """(state, failures), from this worker's cache while a "closed, 0" answer is fresh."""
        if self._state_cache_seconds <= 0:
            return self.storage.snapshot()
        now = time.monotonic()
        if now < self._closed_until:
            return CLOSED, 0
        state, failures = self.storage.snapshot()
        if state == CLOSED and failures == 0:
            self._closed_until = now + self._state_cache_seconds
        return state, failures

    def call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        state, failures = self._snapshot()
        self._observe(state)
        if state == CLOSED:
            return self._call_closed(failures, func, *args, **kwargs)
        if state == OPEN:
            remaining = self._open_remaining()
            if remaining > 0:
                raise BreakerOpenError("circuit open", retry_after=math.ceil(remaining))
        return self._probe(func, *args, **kwargs)

    def _call_closed(self, failures: int, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            if is_failure(exc):
                self._closed_until = 0.0  # ask Redis again from the next call on
                # The state is read only once the threshold is reached (rare), so a worker
                # that lost the race to open it does not report a second transition.
                count = self.storage.increment_and_get()
                if count >= self.fail_max and self.current_state == CLOSED:
                    self._trip(CLOSED)
            raise
        if failures:
            self.storage.reset_counter()
        return result

    def _probe(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        lock: _RedisProbeLock | None = self._new_probe_lock()
        if not lock.acquire():
            raise BreakerOpenError("probe in progress", retry_after=PROBE_BUSY_RETRY_AFTER)
        try:
            # Re-read after winning: another worker's probe may have just finished.
            state = self.current_state
            if state == CLOSED:
                lock.release()
                lock = None
                return self._call_closed(self.storage.counter, func, *args, **kwargs)
            if state == OPEN:
                remaining = self._open_remaining()
                if remaining > 0:
                    raise BreakerOpenError("circuit open", retry_after=math.ceil(remaining))
                self._sync(OPEN)
                self.half_open()
                self._observe(HALF_OPEN)
            else:
                self._sync(HALF_OPEN)  # a probe that died mid-way left it half-open
            try:
                result = func(*args, **kwargs)
            except BaseException as exc:
                if is_failure(exc):
                    self._trip(HALF_OPEN)
                raise
            self._sync(HALF_OPEN)
            self.storage.reset_counter()
            self.close()
            self._observe(CLOSED)
            return result
        finally:
            if lock is not None:
                lock.release()
