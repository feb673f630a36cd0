"""The upstream services: one urllib3 connection pool and one breaker each, per process.

Proxied requests (``proxy.services._send``) and the gateway's own calls (the API docs' schemas)
share the pool. It keeps no cookies, so an upstream's Set-Cookie only reaches the client that
got it.

Built lazily on first use from ``settings.UPSTREAMS`` and kept for the life of the process
(tests that override settings get a fresh set through the ``setting_changed`` signal).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import redis
import urllib3
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from redis.backoff import NoBackoff
from redis.retry import Retry

from common.context import derive_key
from common.settings import env_float
from proxy.breaker import UpstreamBreaker

_RESET_ON = {
    "UPSTREAMS",
    "REDIS_URL",
    "CACHE_KEY_PREFIX",
    "BREAKER_FAILURE_RATE",
    "BREAKER_MIN_CALLS",
    "BREAKER_WINDOW_SECONDS",
    "BREAKER_RESET_TIMEOUT",
    "UPSTREAM_POOL_SIZE",
    "BREAKER_STATE_CACHE_SECONDS",
    "UPSTREAM_MAX_IN_FLIGHT",
    "UPSTREAM_SLOW_SECONDS",
    "INTERNAL_SECRET",
}


@dataclass(frozen=True)
class Upstream:
    """One upstream service as the proxy uses it."""

    name: str
    timeout: tuple[float, float]  # (connect, read) seconds
    pool: urllib3.HTTPConnectionPool  # keep-alive connections to the upstream
    path_prefix: str  # the base URL's path ("" for most), put before every path
    breaker: UpstreamBreaker
    context_key: str  # signs the user context for this service only (common.context)


def _pool(base_url: str, *, size: int, timeout: tuple[float, float]) -> urllib3.HTTPConnectionPool:
    """Keep-alive connections to one upstream: no retries (callers also pass redirect=False), no
    proxy from the environment; ``size`` idle connections kept (more are opened, then dropped,
    under bursts)."""
    return urllib3.connection_from_url(  # type: ignore[no-any-return]
        base_url,
        maxsize=size,
        block=False,
        retries=False,
        timeout=urllib3.Timeout(connect=timeout[0], read=timeout[1]),
    )


def breaker_namespace(name: str) -> str:
    """Redis namespace of an upstream's breaker (prefixed so parallel runs never collide)."""
    return f"{settings.CACHE_KEY_PREFIX}:gateway:breaker:{name}"


def breaker_state_cache_seconds() -> float:
    """``BREAKER_STATE_CACHE_SECONDS`` (setting, else environment; 0.5 s): how long a worker
    trusts a "closed" breaker state read from Redis (see proxy/breaker.py)."""
    value = getattr(settings, "BREAKER_STATE_CACHE_SECONDS", None)
    if value is None:
        return env_float("BREAKER_STATE_CACHE_SECONDS", 0.5)
    return float(value)


def build_breaker(name: str, *, probe_ttl: float) -> UpstreamBreaker:
    """A breaker for ``name`` with its state in Redis (``REDIS_URL``), shared by every worker."""
    client = redis.Redis.from_url(
        settings.REDIS_URL,
        socket_connect_timeout=settings.BREAKER_REDIS_TIMEOUT,
        socket_timeout=settings.BREAKER_REDIS_TIMEOUT,
        health_check_interval=30,
        # One quick retry (a stale pooled connection), no backoff: a Redis outage must cost
        # requests milliseconds, not seconds.
        retry=Retry(NoBackoff(), 1),
    )
    return UpstreamBreaker(
        name=name,
        failure_rate=settings.BREAKER_FAILURE_RATE,
        min_calls=settings.BREAKER_MIN_CALLS,
        window_seconds=settings.BREAKER_WINDOW_SECONDS,
        reset_timeout=settings.BREAKER_RESET_TIMEOUT,
        redis=client,
        namespace=breaker_namespace(name),
        probe_ttl=probe_ttl,
        state_cache_seconds=breaker_state_cache_seconds(),
        max_in_flight=settings.UPSTREAM_MAX_IN_FLIGHT,
        slow_after=settings.UPSTREAM_SLOW_SECONDS,
    )


def _build() -> dict[str, Upstream]:
    built = {}
    for name, config in settings.UPSTREAMS.items():
        timeout = (float(config["connect_timeout"]), float(config["read_timeout"]))
        base_url = str(config["url"]).rstrip("/")
        built[name] = Upstream(
            name=name,
            timeout=timeout,
            pool=_pool(base_url, size=settings.UPSTREAM_POOL_SIZE, timeout=timeout),
            path_prefix=urllib3.util.parse_url(base_url).path or "",
            # The probe lock outlives the slowest possible probe, then frees itself.
            breaker=build_breaker(name, probe_ttl=sum(timeout) + 5),
            context_key=str(config.get("context_key") or "")
            or derive_key(settings.INTERNAL_SECRET, name),
        )
    return built


_lock = threading.Lock()
_upstreams: dict[str, Upstream] | None = None


def get(name: str) -> Upstream:
    """The process-wide ``Upstream`` called ``name``."""
    global _upstreams
    current = _upstreams
    if current is None:
        with _lock:
            if _upstreams is None:
                _upstreams = _build()
            current = _upstreams
    return current[name]


def reset() -> None:
    """Forget the built upstreams (closing their pools); the next ``get`` rebuilds them."""
    global _upstreams
    with _lock:
        old, _upstreams = _upstreams, None
    for upstream in (old or {}).values():
        upstream.pool.close()


@receiver(setting_changed)
def _on_setting_changed(*, setting: str, **kwargs: object) -> None:
    if setting in _RESET_ON:
        reset()
