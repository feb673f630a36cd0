"""Login and registration throttles: per client IP, and login failures per account and address.

The client IP is the X-Forwarded-For entry the gateway appended (``NUM_PROXIES`` hops), so a
client cannot pick its own address by sending the header.

Login failures (rates from settings, counted in the shared cache):

- ``login_username_ip``: failed logins for one username from one client address. This is the
  tight limit; it only ever locks out the address that guessed wrong, so an attacker cannot keep
  the real user out from another address.
- ``login_username``: failed logins for one username from all addresses together, looser, so
  guessing spread over many addresses is still slowed (during such an attack the account is
  delayed for everyone until the window passes: the cost of not allowing unlimited guesses).

Only failures count. Each attempt first reserves one unit in both counters (an atomic
increment, so parallel guesses cannot all slip past the check); a wrong password or unknown user
keeps it, anything else (success, a server error) gives it back. A success also clears the
failures of its own (username, address) pair and nothing else. While a pair or the username is
over its limit every attempt, even with the right password, answers 429 with ``Retry-After``
(the remaining time of the window) without checking the password, so the answer never tells
whether a guess was right.

Redis down: every limit here opens (a WARNING log line per request), as the gateway's rate
limits do; logins and registrations go on, still slowed by the
password hasher. A 500 would refuse every sign-in for the whole outage.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from django.core.cache import cache
from django_redis.exceptions import ConnectionInterrupted
from redis.exceptions import RedisError
from rest_framework.exceptions import Throttled
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle

from accounts.exceptions import InvalidCredentials

logger = logging.getLogger(__name__)

ERROR_LOGIN_LOCKED_ADDRESS = (
    "Too many failed sign-ins for this account from your address. Try again later."
)
ERROR_LOGIN_LOCKED_ACCOUNT = (
    "Too many failed sign-ins for this account from many addresses. Try again later."
)


# What the cache raises when Redis cannot be reached or answer in time.
CACHE_DOWN = (ConnectionInterrupted, RedisError, OSError)


def _store_down(scope: str, exc: BaseException) -> None:
    logger.warning(
        "throttle store unavailable, limit open: %s",
        type(exc).__name__,
        extra={"throttle_scope": scope},
    )


class _ScopedThrottle(SimpleRateThrottle):
    def allow_request(self, request: Request, view: Any) -> bool:
        try:
            return bool(super().allow_request(request, view))
        except CACHE_DOWN as exc:
            _store_down(self.scope or "", exc)
            return True

    def get_rate(self) -> str | None:
        # Read at each request (not at import) so settings overrides apply.
        rate = api_settings.DEFAULT_THROTTLE_RATES.get(self.scope or "")
        return str(rate) if rate else None


class _IPThrottle(_ScopedThrottle):
    def get_cache_key(self, request: Request, view: Any) -> str | None:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class LoginIPThrottle(_IPThrottle):
    """Every login attempt from one client address (failed or not)."""

    scope = "login_ip"


class RegisterIPThrottle(_IPThrottle):
    scope = "register_ip"


def client_address(request: Request) -> str:
    """The client address the IP throttles use (the gateway's X-Forwarded-For entry)."""
    return str(BaseThrottle().get_ident(request))


_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([smhd])[a-z]*\s*$")


def parse_rate(rate: str) -> tuple[int, int]:
    """``"5/min"`` -> (5, 60); a count may precede the unit: ``"20/15min"`` -> (20, 900)."""
    match = _RATE.match(rate)
    if not match:
        raise ValueError(f"not a rate: {rate!r} (use e.g. 5/min, 20/15min, 100/h)")
    count, multiplier, unit = match.groups()
    return int(count), int(multiplier or 1) * _PERIODS[unit]


def _digest(*parts: str) -> str:
    # "failures:" keeps these keys apart from the request histories DRF's throttles kept under
    # the same scope names before (a counter must never find a list there).
    return hashlib.sha256("\x00".join(("failures:", *parts)).encode()).hexdigest()[:32]


def normalise_username(username: str) -> str:
    return username.strip().casefold()


@dataclass(frozen=True)
class FailureCounter:
    """Failed attempts of one kind in a fixed window that starts with the first of them."""

    scope: str
    ident: str
    detail: str

    @property
    def key(self) -> str:
        return f"throttle_{self.scope}_{self.ident}"

    def rate(self) -> tuple[int, int] | None:
        rate = api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)
        if not rate:
            return None
        return parse_rate(str(rate))

    def reserve(self) -> int | None:
        """Take one unit; None if allowed, else the seconds to wait (the unit is given back)."""
        rate = self.rate()
        if rate is None:
            return None
        limit, window = rate
        try:
            cache.add(self.key, 0, timeout=window)
            try:
                count = cache.incr(self.key)
            except ValueError:  # expired between add and incr: a new window
                cache.add(self.key, 0, timeout=window)
                count = cache.incr(self.key)
        except CACHE_DOWN as exc:
            _store_down(self.scope, exc)
            return None
        if count <= limit:
            return None
        self.release()
        return self._remaining(window)

    def release(self) -> None:
        # The window may have ended meanwhile: then there is nothing left to give back.
        with suppress(ValueError, *CACHE_DOWN):
            cache.decr(self.key)

    def clear(self) -> None:
        with suppress(*CACHE_DOWN):
            cache.delete(self.key)

    def _remaining(self, window: int) -> int:
        ttl = getattr(cache, "ttl", None)  # django-redis
        remaining = ttl(self.key) if ttl else None
        if not isinstance(remaining, int) or remaining <= 0:
            return window
        return remaining


def login_counters(*, username: str, address: str) -> tuple[FailureCounter, FailureCounter]:
    """The (username, address) counter and the username counter of a login attempt."""
    name = normalise_username(username)
    return (
        FailureCounter("login_username_ip", _digest(name, address), ERROR_LOGIN_LOCKED_ADDRESS),
        FailureCounter("login_username", _digest(name), ERROR_LOGIN_LOCKED_ACCOUNT),
    )


@contextmanager
def login_failure_guard(*, username: str, address: str) -> Iterator[None]:
    """Run a login attempt under the failure limits (see the module docstring).

    Raises ``Throttled`` (429, ``Retry-After``) before the body runs when the pair or the
    username is over its limit; counts the attempt as a failure only if the body raises
    ``InvalidCredentials``.
    """
    pair, account = login_counters(username=username, address=address)
    taken: list[FailureCounter] = []
    for counter in (pair, account):
        wait = counter.reserve()
        if wait is not None:
            for held in taken:
                held.release()
            logger.warning(
                "login refused: too many failures",
                extra={"throttle_scope": counter.scope, "retry_after": wait},
            )
            raise Throttled(wait=wait, detail=counter.detail)
        taken.append(counter)
    try:
        yield
    except InvalidCredentials:
        raise  # the reserved units stay: they are the failure
    except BaseException:
        for held in taken:
            held.release()
        raise
    else:
        pair.clear()
        account.release()
