"""Every gateway test gets a slice of the run's Redis of its own, removed after it.

The launcher runs the suite with ``REDIS_URL`` (the run's Redis, shared with other runs) and
``CACHE_KEY_PREFIX=mstest-<run id>``. Each test runs under ``<that prefix>-<8 hex>``: the cache's
keys and the breakers' keys of one test are never seen by the next, and are deleted after it.
Never FLUSHDB that Redis: ``cache.clear()`` would, so it fails here.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis
from django.conf import settings
from django.test import override_settings
from django_redis.client import DefaultClient


@dataclass(frozen=True)
class RedisSlice:
    client: redis.Redis
    prefix: str  # every key of the test starts with it


def _no_flush(*args: object, **kwargs: object) -> None:
    raise AssertionError("cache.clear() would FLUSHDB the shared Redis; tests get a fresh prefix")


@pytest.fixture(autouse=True, scope="session")
def _never_flush() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DefaultClient, "clear", _no_flush)
        yield


@pytest.fixture(autouse=True)
def redis_slice() -> Iterator[RedisSlice]:
    prefix = f"{settings.CACHE_KEY_PREFIX}-{uuid.uuid4().hex[:8]}"
    caches = {"default": {**settings.CACHES["default"], "KEY_PREFIX": f"{prefix}-gateway"}}
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        # Changing CACHE_KEY_PREFIX rebuilds the upstreams, so the breakers use it too.
        with override_settings(CACHE_KEY_PREFIX=prefix, CACHES=caches):
            yield RedisSlice(client, prefix)
    finally:
        keys = list(client.scan_iter(f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
