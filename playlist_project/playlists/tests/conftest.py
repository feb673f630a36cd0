"""Fixtures of the playlist tests: mongomock per test, signed API clients, the real broker."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import cache
from kombu import Connection
from rest_framework.test import APIClient

from common.context import sign
from common.events import ANALYSIS_DLQ, ANALYSIS_QUEUE, PLAYLIST_DLQ, PLAYLIST_QUEUE
from common.testing import server_url
from playlists import db
from playlists.documents import Playlist
from playlists.runtime import runtime

REAL_MONGODB_URI = settings.MONGODB_URI


@pytest.fixture(scope="session", autouse=True)
def _mongomock_for_the_suite() -> Iterator[None]:
    """Every test runs on mongomock; only the ``mongo`` contract tests use MONGODB_URI."""
    settings.MONGODB_URI = None
    db.reconnect()
    yield
    settings.MONGODB_URI = REAL_MONGODB_URI
    db.reconnect()


@pytest.fixture(autouse=True)
def _clean_state() -> Iterator[None]:
    if db.is_mock():
        Playlist.drop_collection()
        Playlist.ensure_indexes()
    if "locmem" in settings.CACHES["default"]["BACKEND"]:
        cache.clear()  # never on Redis: clear() there would flush a shared database
    yield
    runtime.stop()
    if db.is_mock():
        Playlist.drop_collection()


class SignedClient:
    """An API client that sends a freshly signed user context with every request."""

    def __init__(self, user_id: str, username: str | None = None) -> None:
        self.user_id = user_id
        self.username = username or f"user-{user_id}"
        self.client = APIClient()

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        signed = sign(
            {"id": self.user_id, "username": self.username}, secret=settings.INTERNAL_SECRET
        )
        return {**signed, **(extra or {})}

    def _call(
        self,
        method: str,
        path: str,
        data: Any = None,
        *,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> Any:
        kwargs.setdefault("format", "json")
        return getattr(self.client, method)(path, data, headers=self.headers(headers), **kwargs)

    def get(self, path: str, data: Any = None, **kwargs: Any) -> Any:
        return self.client.get(
            path, data, headers=self.headers(kwargs.pop("headers", None)), **kwargs
        )

    def post(self, path: str, data: Any = None, **kwargs: Any) -> Any:
        return self._call("post", path, data, **kwargs)

    def put(self, path: str, data: Any = None, **kwargs: Any) -> Any:
        return self._call("put", path, data, **kwargs)

    def patch(self, path: str, data: Any = None, **kwargs: Any) -> Any:
        return self._call("patch", path, data, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.client.delete(path, headers=self.headers(kwargs.pop("headers", None)), **kwargs)


@pytest.fixture
def alice() -> SignedClient:
    return SignedClient(f"alice-{uuid.uuid4().hex[:8]}", "alice")


@pytest.fixture
def bob() -> SignedClient:
    return SignedClient(f"bob-{uuid.uuid4().hex[:8]}", "bob")


@pytest.fixture
def make_playlist(alice: SignedClient) -> Callable[..., dict[str, Any]]:
    def make(client: SignedClient | None = None, **body: Any) -> dict[str, Any]:
        body.setdefault("name", "Road trip")
        body.setdefault(
            "tracks", ["Song 1", {"title": "Song 2", "artist": "Band", "genre": " Rock "}]
        )
        response = (client or alice).post("/api/playlists", body)
        assert response.status_code == 201, response.content
        return response.json()

    return make


def pending_envelopes() -> list[dict[str, Any]]:
    """Every event still in the outbox, in write order."""
    rows = []
    for document in Playlist._get_collection().find({}, {"pending_events": 1}):
        rows.extend(document.get("pending_events") or [])
    rows.sort(key=lambda row: row["written_at"])
    return [row["envelope"] for row in rows]


def wait_for(predicate: Callable[[], Any], *, timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Poll until ``predicate`` is truthy; fail (not hang) after a generous bound."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


# --------------------------------------------------------------------------- real RabbitMQ


@pytest.fixture
def amqp_url() -> str:
    return server_url("amqp")


class QueueReader:
    """Reads Celery task messages back from queues of the test vhost."""

    def __init__(self, url: str) -> None:
        self.connection = Connection(url, connect_timeout=5)
        self.channel = self.connection.channel()
        for queue in (ANALYSIS_QUEUE, ANALYSIS_DLQ, PLAYLIST_QUEUE, PLAYLIST_DLQ):
            queue.bind(self.channel).declare()
            queue.bind(self.channel).purge()

    def take(self, queue: Any = ANALYSIS_QUEUE) -> list[dict[str, Any]]:
        """Every message now in ``queue`` (acknowledged), as ``{"task", "envelope", ...}``."""
        bound = queue.bind(self.channel)
        found = []
        while (message := bound.get(no_ack=False, accept=["json"])) is not None:
            body = message.decode()
            args = body[0] if isinstance(body, list) else body.get("args")
            found.append(
                {
                    "task": message.headers.get("task"),
                    "envelope": args[0],
                    "headers": message.headers,
                    "delivery_mode": message.properties.get("delivery_mode"),
                }
            )
            message.ack()
        return found

    def take_until(
        self, count: int, queue: Any = ANALYSIS_QUEUE, timeout: float = 20.0
    ) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []

        def enough() -> bool:
            found.extend(self.take(queue))
            return len(found) >= count

        wait_for(enough, timeout=timeout)
        time.sleep(0.3)  # anything beyond ``count`` would arrive now: tests check "exactly"
        found.extend(self.take(queue))
        return found

    def close(self) -> None:
        self.connection.release()


@pytest.fixture
def queues(amqp_url: str) -> Iterator[QueueReader]:
    reader = QueueReader(amqp_url)
    yield reader
    reader.take(ANALYSIS_QUEUE)
    reader.close()


@pytest.fixture
def redis_cache_settings(settings: Any) -> dict[str, Any]:
    """CACHES on the real Redis slice of this run (keys under CACHE_KEY_PREFIX)."""
    url = server_url("redis")
    prefix = os.environ.get("CACHE_KEY_PREFIX", "mstest-local")
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": f"{prefix}:playlist",
            "TIMEOUT": 60,
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.DefaultClient",
                "SOCKET_CONNECT_TIMEOUT": 0.5,
                "SOCKET_TIMEOUT": 0.5,
            },
        }
    }
    return settings.CACHES
