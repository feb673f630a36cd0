"""Fixtures of the playlist tests: a database of this run on the MongoDB wire-protocol server
of the run (TEST_MONGODB_URI), signed API clients, the real broker, real processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mongoengine
import pytest
from django.conf import settings
from kombu import Connection

from common import context
from common.events import ANALYSIS_DLQ, ANALYSIS_QUEUE, PLAYLIST_DLQ, PLAYLIST_QUEUE
from common.testclient import ContextClient, context_headers
from common.testing import run_id, server_url
from playlists import db
from playlists.documents import OutboxEvent, Playlist, ensure_indexes

PROJECT_DIR = Path(__file__).resolve().parents[2]
REPO_ROOT = PROJECT_DIR.parent


def database_name() -> str:
    """MONGODB_DB as the launcher sets it (``playlist_test_<run id>``), else one of this run."""
    name = os.environ.get("MONGODB_DB") or f"playlist_test_{run_id()}"
    if "test" not in name:
        # The session drops this database at the end: never one that holds real playlists.
        pytest.fail(f"MONGODB_DB={name!r}: the tests need a database named *test*", pytrace=False)
    return name


@contextlib.contextmanager
def connected_to(uri: str, name: str) -> Iterator[None]:
    """Point the service (settings and mongoengine) at database ``name`` on ``uri``."""
    saved = settings.MONGODB_URI, settings.MONGODB_DB
    settings.MONGODB_URI, settings.MONGODB_DB = uri, name
    db.disconnect()
    db.connect()
    try:
        yield
    finally:
        db.disconnect()
        settings.MONGODB_URI, settings.MONGODB_DB = saved
        db.connect()


@pytest.fixture(scope="session", autouse=True)
def mongodb() -> Iterator[str]:
    """The run's server and database: created with the indexes, dropped at the end."""
    uri, name = server_url("mongodb"), database_name()
    with connected_to(uri, name):
        mongoengine.get_connection(db.ALIAS).drop_database(name)
        ensure_indexes()
        yield uri
        mongoengine.get_connection(db.ALIAS).drop_database(name)


@pytest.fixture(autouse=True)
def _clean_collections(mongodb: str) -> None:
    Playlist._get_collection().delete_many({})
    OutboxEvent._get_collection().delete_many({})


class SignedClient:
    """An API client that sends a freshly signed user context with every request, signed for
    that request's method, path and body as the gateway does (``common.testclient``)."""

    def __init__(self, user_id: str, username: str | None = None) -> None:
        self.user_id = user_id
        self.username = username or f"user-{user_id}"
        self.client = ContextClient().as_user(self.user_id, self.username)

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """Headers of one GET /api/playlists as the gateway signs it, plus ``extra``."""
        signed = context_headers(
            {"id": self.user_id, "username": self.username}, method="GET", path="/api/playlists"
        )
        own = {
            context.USER_HEADER: signed[context.USER_META],
            context.SIGNATURE_HEADER: signed[context.SIGNATURE_META],
        }
        return {**own, **(extra or {})}

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
        return getattr(self.client, method)(path, data, headers=headers, **kwargs)

    def get(self, path: str, data: Any = None, **kwargs: Any) -> Any:
        return self.client.get(path, data, **kwargs)

    def post(self, path: str, data: Any = None, **kwargs: Any) -> Any:
        return self._call("post", path, data, **kwargs)

    def put(self, path: str, data: Any = None, **kwargs: Any) -> Any:
        return self._call("put", path, data, **kwargs)

    def patch(self, path: str, data: Any = None, **kwargs: Any) -> Any:
        return self._call("patch", path, data, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.client.delete(path, **kwargs)


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
    """Every event still in the outbox (playlists' ``pending_events`` and the ``outbox``
    collection of plays), in write order."""
    rows = []
    for document in Playlist._get_collection().find({}, {"pending_events": 1}):
        rows.extend(document.get("pending_events") or [])
    rows.extend(OutboxEvent._get_collection().find({}))
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


# --------------------------------------------------------------------------- real processes


class Process:
    """One real process of the service (the relay, a Celery worker) in a group of its own."""

    def __init__(self, args: list[str], *, env: dict[str, str], log_path: Path) -> None:
        self.args = args
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *, ready: str) -> Process:
        """Start it and wait until its log shows ``ready``."""
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.args,
                cwd=PROJECT_DIR,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        wait_for(lambda: self._alive() and ready in self.log(), timeout=40)
        return self

    def _alive(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"{self.args} exited:\n{self.log()}")
        return True

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, signum: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signum)

    def stop(self) -> int | None:
        """SIGTERM the group, SIGKILL it if still there after 15 s; the exit status."""
        if self.proc is None:
            return None
        self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            return self.proc.wait(10)


@pytest.fixture
def process_env(mongodb: str, amqp_url: str) -> dict[str, str]:
    """The environment of a process of this test run: its database and its broker vhost."""
    env = dict(os.environ)
    env.update(
        MONGODB_URI=mongodb,
        MONGODB_DB=settings.MONGODB_DB,
        CELERY_BROKER_URL=amqp_url,
        PYTHONPATH=os.pathsep.join([str(PROJECT_DIR), str(REPO_ROOT)]),
        DJANGO_SETTINGS_MODULE="playlist_project.settings",
        LOG_FORMAT="text",
        LOG_LEVEL="INFO",
    )
    return env


@pytest.fixture
def start_process(process_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Process]]:
    """``start_process(kind)``: ``"relay"`` (manage.py outbox_relay) or ``"worker"`` (the
    ``playlist.events`` Celery worker), as the launcher and Compose run them; stopped after."""
    celery = [sys.executable, "-m", "celery", "-A", "playlist_project", "worker", "-c", "1"]
    celery += ["-Q", PLAYLIST_QUEUE.name, "--without-gossip", "--without-mingle", "-l", "INFO"]
    commands = {
        "relay": ([sys.executable, "manage.py", "outbox_relay"], "outbox relay started"),
        "worker": ([*celery, "-n", f"playlist-{uuid.uuid4().hex[:8]}@%h"], " ready."),
    }
    started: list[Process] = []

    def start(kind: str, **env: str) -> Process:
        args, ready = commands[kind]
        log_path = tmp_path / f"{kind}-{len(started)}.log"
        process = Process(args, env={**process_env, **env}, log_path=log_path)
        started.append(process)
        return process.start(ready=ready)

    yield start
    for process in started:
        process.stop()
