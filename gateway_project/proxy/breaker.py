"""One circuit breaker per upstream, shared by every request (and, through Redis, every worker).

Design decisions:

* **pybreaker for state, our own admission.** ``pybreaker.CircuitBreaker.call`` holds one
  process-wide lock for the whole guarded call, which would serialise every proxied request of a
  worker. ``UpstreamBreaker.call`` therefore reads the state itself (one Redis GET, or none
  while a "closed" answer is cached) and calls the upstream without any lock; transitions still
  go through pybreaker's ``open()`` / ``half_open()`` / ``close()`` so its storage layout
  (``CircuitRedisStorage``: state, opened_at) and its listeners are used unchanged; its
  consecutive-failure counter is not used.
* **Exactly one probe in half-open.** pybreaker lets every concurrent caller through once
  ``reset_timeout`` has passed. Here a caller must first win a probe lock: a Redis
  ``SET NX PX`` lock (redis-py ``Lock``, released by token so a late probe cannot free a newer
  one) named after the upstream, so one probe runs across all gateway workers. Losers get 503
  at once. The lock expires after the probe's
  own timeout, so a worker that dies mid-probe cannot wedge the breaker in half-open. The
  probe's success closes the breaker, its failure re-opens it for another ``reset_timeout``.
* **What counts as a failure:** only what says the upstream itself is unhealthy: connection
  errors, timeouts and 502/503/504 answers (see ``is_failure``). A 500 is an answer (a bug or
  a request the service could not handle, which one client can provoke at will): it passes
  through and counts as a call, like every 4xx.
* **Opens on a failure rate, not N failures in a row** (the Envoy / Moleculer model): the
  breaker opens when, over the last ``window_seconds``, at least ``min_calls`` calls were made
  and at least ``failure_rate`` of them failed. Redis holds two counters per second per
  upstream (``...:window:calls:<second>`` and ``...:window:fails:<second>``, each expiring
  after the window). A failure adds itself (and this worker's pending calls) and reads the
  window's buckets back in one pipelined round trip, then decides. Successes cost no round
  trip of their own: each worker counts them locally per second and adds them to Redis when
  its second changes (one pipelined write per worker per second at most) or with its next
  failure; at the moment a failure is judged, other workers' calls of their current second
  (or of their last busy second, for a worker idle since) may not be counted yet, so the rate
  errs a little towards opening. Closing after a probe clears the window.
* **Closed state cached per worker.** With ``state_cache_seconds`` > 0 (the gateway uses
  ``BREAKER_STATE_CACHE_SECONDS``, 0.5 s by default) a worker that read "closed" trusts that
  answer for that long instead of asking Redis on every request (one Redis round trip less per
  proxied request; see docs/performance.md). A failure this worker sees drops the cached
  answer at once (its counting and tripping always go to Redis), so only a trip made by
  *another* worker reaches this one up to ``state_cache_seconds`` late. Open and half-open are
  never cached.
* **Redis down:** the breaker behaves as closed (requests go through and succeed or fail on
  their own), logged as a warning at most every few seconds, and asks Redis again only after a
  short back-off so a black-holed Redis does not add its timeout to every request; it never
  turns a Redis outage into an outage of every upstream.
* **A bulkhead per upstream and worker** (``Bulkhead``): at most ``max_in_flight`` calls to one
  upstream at a time in a worker (by default one less than its threads). A call over the limit
  waits for a slot while the calls in flight are young, and is refused at once (503,
  ``Retry-After: 1``) once the oldest has run ``slow_after`` seconds. So an upstream that hangs
  holds at most ``max_in_flight`` threads of a worker until its read timeout, and the others
  keep serving the other upstreams (a hang opens the breaker late or never: each failure is
  only counted at its timeout). Ordinary bursts wait a few milliseconds, as they would in the
  worker's queue.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
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


def _now() -> float:
    """Wall-clock seconds naming the window's buckets (shared by workers; tests replace it)."""
    return time.time()


class UpstreamServerError(Exception):
    """The upstream answered 502/503/504: a breaker failure whose answer is still passed on."""

    def __init__(self, response: Any) -> None:
        super().__init__(f"upstream answered {getattr(response, 'status', '?')}")
        self.response = response


class BreakerOpenError(pybreaker.CircuitBreakerError):
    """The breaker refuses the call; ``retry_after`` is in whole seconds (at least 1)."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)


# Answers that say the upstream (or what stands in front of it) is unhealthy.
FAILURE_STATUSES = frozenset({502, 503, 504})


def is_failure(exc: BaseException) -> bool:
    """Connection errors, timeouts and 502/503/504 answers count; nothing else does."""
    return isinstance(exc, requests.ConnectionError | requests.Timeout | UpstreamServerError)


class RedisStorage(pybreaker.CircuitRedisStorage):
    """pybreaker's Redis storage plus the per-second call/failure window and quiet Redis errors."""

    _last_warning = 0.0
    _down_until = 0.0

    def __init__(self, state: str, redis: Redis, *, namespace: str, window_seconds: int) -> None:
        self.window_seconds = max(1, int(window_seconds))
        super().__init__(state, redis, namespace=namespace)

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

    def _down(self) -> bool:
        # Redis failed moments ago: don't make every request wait for its timeout again.
        return bool(self._down_until) and time.monotonic() < self._down_until

    def snapshot(self) -> str:
        """The shared state, in one round trip (closed while Redis does not answer)."""
        if self._down():
            return self._fallback_circuit_state
        try:
            state = self._redis.get(self._namespace("state"))
        except RedisError as exc:
            self._warn(exc)
            return self._fallback_circuit_state
        if state is None:
            self._initialize_redis_state(self._fallback_circuit_state)
            return self._fallback_circuit_state
        if isinstance(state, bytes):
            state = state.decode()
        return str(state)

    # -- the sliding window ------------------------------------------------------------------

    def _bucket(self, kind: str, second: int) -> str:
        return self._namespace(f"window:{kind}:{second}")

    def _add_calls(self, pipe: Any, second: int, calls: int) -> None:
        key = self._bucket("calls", second)
        pipe.incrby(key, calls)
        pipe.expire(key, self.window_seconds + 2)

    def calls_add(self, *, second: int, calls: int) -> None:
        """Add ``calls`` (this worker's, counted locally) to the bucket of ``second``."""
        if calls <= 0 or second <= int(_now()) - self.window_seconds or self._down():
            return  # nothing to add, or already outside the window
        try:
            pipe = self._redis.pipeline(transaction=False)
            self._add_calls(pipe, second, calls)
            pipe.execute()
        except RedisError as exc:
            self._warn(exc)

    def failure_add(
        self, *, second: int, calls: int, earlier: tuple[int, int] | None
    ) -> tuple[int, int]:
        """Count one failed call (plus ``calls`` other calls) in ``second``'s buckets and return
        the window's totals ``(calls, failures)``; ``earlier`` is a (second, calls) pair of this
        worker still to be added. One round trip. ``(0, 0)`` while Redis does not answer."""
        if self._down():
            return 0, 0
        seconds = range(second - self.window_seconds + 1, second + 1)
        try:
            pipe = self._redis.pipeline(transaction=False)
            if earlier is not None and earlier[0] > second - self.window_seconds and earlier[1]:
                self._add_calls(pipe, *earlier)
            self._add_calls(pipe, second, calls + 1)
            failures_key = self._bucket("fails", second)
            pipe.incr(failures_key)
            pipe.expire(failures_key, self.window_seconds + 2)
            pipe.mget([self._bucket("calls", s) for s in seconds])
            pipe.mget([self._bucket("fails", s) for s in seconds])
            results = pipe.execute()
        except RedisError as exc:
            self._warn(exc)
            return 0, 0
        return sum(int(v or 0) for v in results[-2]), sum(int(v or 0) for v in results[-1])

    def reset_counter(self) -> None:
        """pybreaker calls this when the breaker closes: the window starts afresh."""
        now = int(_now())
        seconds = range(now - self.window_seconds - 2, now + 2)
        keys = [self._bucket(kind, s) for s in seconds for kind in ("calls", "fails")]
        try:
            self._redis.delete(*keys)
        except RedisError as exc:
            self._warn(exc)

    def keys(self) -> list[str]:
        """The fixed keys this storage writes (the window's buckets expire on their own)."""
        return [
            self._namespace(k) for k in ("state", "fail_counter", "success_counter", "opened_at")
        ]


class Bulkhead:
    """At most ``limit`` calls in flight at a time in this process (0: no limit); see the
    module's docstring."""

    def __init__(self, *, limit: int, slow_after: float) -> None:
        self.limit = limit
        self.slow_after = slow_after
        self._cond = threading.Condition()
        self._started: dict[object, float] = {}  # one entry per call in flight

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        if self.limit <= 0:
            yield
            return
        token = object()
        with self._cond:
            while len(self._started) >= self.limit:
                age = time.monotonic() - min(self._started.values())
                if age >= self.slow_after:
                    raise BreakerOpenError(
                        "upstream busy: every slot held by a slow call",
                        retry_after=PROBE_BUSY_RETRY_AFTER,
                    )
                self._cond.wait(self.slow_after - age)
            self._started[token] = time.monotonic()
        try:
            yield
        finally:
            with self._cond:
                del self._started[token]
                self._cond.notify()


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
    raise ``UpstreamServerError`` for a 502/503/504 answer so that it counts as a failure.
    The breaker opens when at least ``min_calls`` calls were made in the last
    ``window_seconds`` and at least ``failure_rate`` (0-1) of them failed.
    """

    def __init__(
        self,
        *,
        name: str,
        failure_rate: float,
        min_calls: int,
        window_seconds: int,
        reset_timeout: float,
        redis: Redis,
        namespace: str,
        probe_ttl: float = 30.0,
        state_cache_seconds: float = 0.0,
        max_in_flight: int = 0,
        slow_after: float = 1.0,
    ) -> None:
        storage = RedisStorage(CLOSED, redis, namespace=namespace, window_seconds=window_seconds)
        key = f"{namespace}:pybreaker:probe"
        self._new_probe_lock: Callable[[], _RedisProbeLock] = lambda: _RedisProbeLock(
            redis, key, probe_ttl
        )
        super().__init__(
            fail_max=max(1, min_calls),  # unused: the rate decides (see _failure)
            reset_timeout=reset_timeout,
            name=name,
            state_storage=storage,
            listeners=[MetricsListener()],
            throw_new_error_on_trip=False,
        )
        self.storage = storage
        self.failure_rate = failure_rate
        self.min_calls = max(1, min_calls)
        self._gauge = metrics.breaker_state.labels(upstream=name)
        self._gauge_value = -1
        self._state_cache_seconds = state_cache_seconds
        self._closed_until = 0.0  # monotonic time until which "closed" is trusted
        # Calls of this worker not yet added to Redis: (second, count).
        self._pending_lock = threading.Lock()
        self._pending_second = 0
        self._pending_calls = 0
        self.bulkhead = Bulkhead(limit=max_in_flight, slow_after=slow_after)
        self._observe(storage.snapshot())

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

    def window_exceeded(self, calls: int, failures: int) -> bool:
        """The opening rule: enough calls in the window, and too many of them failed."""
        return calls >= self.min_calls and failures >= self.failure_rate * calls

    # -- counting ----------------------------------------------------------------------------

    def _success(self) -> None:
        """Count a call locally; hand the previous second's count to Redis when it changes."""
        second = int(_now())
        with self._pending_lock:
            if second == self._pending_second:
                self._pending_calls += 1
                return
            flush = (self._pending_second, self._pending_calls)
            self._pending_second, self._pending_calls = second, 1
        self.storage.calls_add(second=flush[0], calls=flush[1])

    def _failure(self) -> None:
        """Count a failure (with this worker's pending calls) and open when the rate says so."""
        self._closed_until = 0.0  # ask Redis again from the next call on
        second = int(_now())
        with self._pending_lock:
            pending = (self._pending_second, self._pending_calls)
            self._pending_second, self._pending_calls = second, 0
        current = pending[1] if pending[0] == second else 0
        earlier = pending if pending[0] != second else None
        calls, failures = self.storage.failure_add(second=second, calls=current, earlier=earlier)
        # The state is read only once the rule is met (rare), so a worker that lost the race
        # to open it does not report a second transition.
        if self.window_exceeded(calls, failures) and self.current_state == CLOSED:
            self._trip(CLOSED)

    # -- the call ----------------------------------------------------------------------------

    def _snapshot(self) -> str:
        """The state, from this worker's cache while a "closed" answer is fresh."""
        if self._state_cache_seconds <= 0:
            return self.storage.snapshot()
        now = time.monotonic()
        if now < self._closed_until:
            return CLOSED
        state = self.storage.snapshot()
        if state == CLOSED:
            self._closed_until = now + self._state_cache_seconds
        return state

    def call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        state = self._snapshot()
        self._observe(state)
        if state == OPEN:
            remaining = self._open_remaining()
            if remaining > 0:
                raise BreakerOpenError("circuit open", retry_after=math.ceil(remaining))
        with self.bulkhead.admit():
            if state == CLOSED:
                return self._call_closed(func, *args, **kwargs)
            return self._probe(func, *args, **kwargs)

    def _call_closed(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            if is_failure(exc):
                self._failure()
            else:
                self._success()  # a call all the same (the rate's denominator)
            raise
        self._success()
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
                return self._call_closed(func, *args, **kwargs)
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
            self.close()  # pybreaker then calls storage.reset_counter(): a fresh window
            self._observe(CLOSED)
            return result
        finally:
            if lock is not None:
                lock.release()
