"""DRF throttles of the gateway: anonymous callers per IP, authenticated callers per user.

Fixed-window counters (one atomic cache increment per request, O(1) whatever the rate) instead
of DRF's sliding history list, whose size and (de)serialisation cost grow with the rate; a
client can at most burst twice the rate across a window boundary. Rates come from settings
(``GATEWAY_ANON_RATE``, ``GATEWAY_USER_RATE``, DRF syntax such as ``120/min``) at request time.
If the cache does not answer, the request is let through (logged): rate limiting is protection,
not a reason to turn a Redis outage into a gateway outage.
"""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar
from typing import Any

from django.conf import settings
from django.core.cache import cache
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from proxy.services import client_address

logger = logging.getLogger(__name__)

_WARN_EVERY = 10.0
_last_warning = 0.0


# The caller's throttle count, fetched in the revocation check's round trip (revocation.py):
# (cache key of the window, count after this request's increment). Consumed once.
_prefetched: ContextVar[tuple[str, int] | None] = ContextVar("gateway_throttle_count", default=None)


def user_window(*, user_id: str) -> tuple[str, int] | None:
    """(cache key, lifetime) of ``user_id``'s current ``GatewayUserThrottle`` window, or None
    when user throttling is off; the key is the one ``GatewayUserThrottle`` increments."""
    throttle = GatewayUserThrottle()
    if throttle.rate is None or throttle.duration is None:
        return None
    ident = throttle.cache_format % {"scope": throttle.scope, "ident": user_id}
    window = int(time.time() // throttle.duration)
    return f"{ident}:{window}", int(throttle.duration) + 1


def user_count_prefetched(*, key: str, count: int) -> None:
    """Hand this request's already-incremented count to ``GatewayUserThrottle``."""
    _prefetched.set((key, count))


def redis_client() -> Any:
    """The raw redis-py client behind the default cache (django-redis)."""
    return cache.client.get_client(write=True)  # type: ignore[attr-defined]


class FixedWindowRateThrottle(SimpleRateThrottle):
    """``num_requests`` per ``duration`` seconds per ``get_cache_key``; fails open."""

    setting_name = ""
    _wait: float | None = None

    def get_rate(self) -> str | None:
        return getattr(settings, self.setting_name)

    def allow_request(self, request: Request, view: APIView) -> bool:
        if self.rate is None or self.num_requests is None or self.duration is None:
            return True
        ident = self.get_cache_key(request, view)
        if ident is None:
            return True
        now = time.time()
        window = int(now // self.duration)
        key = f"{ident}:{window}"
        try:
            count = self._hit(key)
        except Exception as exc:
            self._warn(exc)
            return True
        if count > self.num_requests:
            self._wait = (window + 1) * self.duration - now
            return False
        return True

    def _hit(self, key: str) -> int:
        prefetched = _prefetched.get()
        if prefetched is not None:
            _prefetched.set(None)
            if prefetched[0] == key:  # same caller, same window: counted already
                return prefetched[1]
        # One round trip, no script: create the window's counter with its expiry if it is new,
        # then count (django-redis' incr sends a Lua script, and a miss costs two more).
        full = cache.make_key(key)
        pipe = redis_client().pipeline(transaction=False)
        pipe.set(full, 0, ex=int(self.duration or 1) + 1, nx=True)
        pipe.incr(full)
        return int(pipe.execute()[1])

    @staticmethod
    def _warn(exc: Exception) -> None:
        global _last_warning
        if time.monotonic() - _last_warning > _WARN_EVERY:
            _last_warning = time.monotonic()
            logger.warning("throttle cache unavailable, not throttling: %s", exc)

    def wait(self) -> float | None:
        return self._wait


class GatewayAnonThrottle(FixedWindowRateThrottle):
    """Anonymous requests, per client IP (``REMOTE_ADDR`` unless ``NUM_PROXIES`` is set)."""

    scope = "gateway_anon"
    setting_name = "GATEWAY_ANON_RATE"

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        if request.user and request.user.is_authenticated:
            return None
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}

    def get_ident(self, request: Request) -> str:
        """The address the gateway forwards to the services too (``client_address``)."""
        return client_address(request=request._request)


class GatewayUserThrottle(FixedWindowRateThrottle):
    """Authenticated requests, per user id."""

    scope = "gateway_user"
    setting_name = "GATEWAY_USER_RATE"

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        if not (request.user and request.user.is_authenticated):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}
