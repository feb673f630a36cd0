"""Fixtures of the analysis suite: the run's PostgreSQL database, Redis and RabbitMQ vhost."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from django.core.cache import cache
from kombu import Connection
from rest_framework.test import APIClient

from common.events import ANALYSIS_DLQ, ANALYSIS_QUEUE
from common.testclient import ContextClient
from common.testing import django_test_database_url, server_url

PROJECT_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = PROJECT_DIR.parent
CELERY_BIN = str(Path(sys.executable).with_name("celery"))


@pytest.fixture(autouse=True)
def _cache() -> Iterator[None]:
    """Each test starts and ends with an empty cache: this run's keys only (Redis is shared)."""
    cache.delete_pattern("*")
    yield
    cache.delete_pattern("*")


@pytest.fixture
def redis_url() -> str:
    return server_url("redis")


def signed_client(user_id: str, username: str = "listener") -> APIClient:
    """A client carrying the gateway's signed context for that user, signed per request."""
    return ContextClient().as_user(user_id, username)


@pytest.fixture
def api() -> Callable[[str], APIClient]:
    """``api(user_id)``: a client carrying the gateway's signed context for that user."""
    return signed_client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- broker and workers


@pytest.fixture
def amqp_url() -> str:
    return server_url("amqp")


def publisher_app(name: str, broker_url: str, **transport_options: Any) -> Celery:
    """A publisher's Celery app on ``broker_url`` (configured as playlist and auth publish)."""
    app = Celery(name, set_as_current=False)
    app.conf.update(
        broker_url=broker_url,
        # Celery lets CELERY_BROKER_URL in the environment win over broker_url; not over this.
        broker_write_url=broker_url,
        broker_transport_options=transport_options,
        broker_connection_timeout=2,
        task_serializer="json",
        accept_content=["json"],
        task_create_missing_queues=False,
    )
    return app


@pytest.fixture
def publisher(amqp_url: str) -> Iterator[Celery]:
    """A publisher's Celery app on this run's vhost (what playlist and auth use)."""
    app = publisher_app("analysis-tests-publisher", amqp_url, confirm_publish=True)
    yield app
    app.close()


@dataclass(frozen=True)
class RedisBroker:
    url: str
    prefix: str

    def connection(self) -> Connection:
        return Connection(self.url, transport_options={"global_keyprefix": self.prefix})


@pytest.fixture
def redis_broker(redis_url: str) -> Iterator[RedisBroker]:
    """Celery's Redis transport (the single-machine broker) on this run's Redis, under a key
    prefix of this test only; its keys are deleted afterwards (never FLUSHDB: Redis is shared)."""
    prefix = f"{os.environ.get('CACHE_KEY_PREFIX', 'ms')}-broker-{uuid.uuid4().hex[:8]}:"
    yield RedisBroker(redis_url, prefix)
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def queues(amqp_url: str) -> Iterator[Connection]:
    """The event queue and its dead-letter queue, declared and empty."""
    with Connection(amqp_url) as conn:
        channel = conn.default_channel
        for queue in (ANALYSIS_QUEUE, ANALYSIS_DLQ):
            bound = queue.bind(channel)
            bound.declare()
            bound.purge()
        yield conn


def read_queue(conn: Connection, queue: Any, *, expect: int, timeout: float = 15) -> list[Any]:
    """Take (and acknowledge) messages of ``queue`` until ``expect`` arrived or time is up."""
    bound = queue.bind(conn.default_channel)
    messages: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(messages) < expect and time.monotonic() < deadline:
        message = bound.get(no_ack=True, accept=["json", "text/plain", "application/data"])
        if message is None:
            time.sleep(0.1)
            continue
        messages.append(message)
    return messages


def wait_for(predicate: Callable[[], Any], *, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


class Worker:
    """One real ``celery -A analysis_project worker`` process group."""

    def __init__(self, name: str, env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.env = env
        self.log_path = log_path
        self.metrics_port = int(env["ANALYSIS_WORKER_METRICS_PORT"])
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    CELERY_BIN,
                    "-A",
                    "analysis_project",
                    "worker",
                    "-Q",
                    ANALYSIS_QUEUE.name,
                    "-n",
                    f"{self.name}@%h",
                    "--concurrency",
                    "1",
                    "--loglevel",
                    "INFO",
                    "--without-gossip",
                    "--without-mingle",
                ],
                cwd=PROJECT_DIR,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        wait_for(self._ready, timeout=40, what=f"worker {self.name} to start")
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"worker {self.name} exited:\n{self.log()}")
        return self.metrics() is not None

    def metrics(self) -> str | None:
        try:
            url = f"http://127.0.0.1:{self.metrics_port}/metrics"
            with urllib.request.urlopen(url, timeout=2) as response:
                return str(response.read().decode())
        except OSError:
            return None

    def sample(self, name: str, **labels: str) -> float:
        """A metric value (0 when absent) from the worker's own /metrics."""
        text = self.metrics() or ""
        wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
        for line in text.splitlines():
            if line.startswith("#") or " " not in line:
                continue
            series, value = line.rsplit(" ", 1)
            metric, _, rest = series.partition("{")
            got = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
            if metric == name and got == wanted:
                return float(value)
        return 0.0

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL the whole group (main process and pool children) at once."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.kill()


@pytest.fixture
def worker_env(transactional_db: None, tmp_path: Path) -> dict[str, str]:
    """The environment of a worker process of this test run (the broker: see start_worker)."""
    env = dict(os.environ)
    env.update(
        # A worker killed with SIGKILL cannot remove its metrics folder: keep it in tmp_path.
        ANALYSIS_WORKER_METRICS_DIR=str(tmp_path / "metrics"),
        DATABASE_URL=django_test_database_url(),
        DB_CONN_MAX_AGE="0",
        PYTHONPATH=os.pathsep.join([str(PROJECT_DIR), str(REPO_ROOT)]),
        DJANGO_SETTINGS_MODULE="analysis_project.settings",
        LOG_FORMAT="text",
        LOG_LEVEL="INFO",
    )
    env.pop("TEST_DATABASE_NAME", None)
    return env


@pytest.fixture
def launch_worker(worker_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """``launch_worker(name, CELERY_BROKER_URL=..., **env)``: a running worker, stopped at the
    end of the test."""
    started: list[Worker] = []

    def _launch(name: str, **extra_env: str) -> Worker:
        env = {**worker_env, "ANALYSIS_WORKER_METRICS_PORT": str(free_port()), **extra_env}
        worker = Worker(name, env, tmp_path / f"{name}.log")
        started.append(worker)
        return worker.start()

    yield _launch
    for worker in started:
        worker.stop()
        # Shown by pytest only when the test failed.
        print(f"----- worker {worker.name} log (tail) -----\n{worker.log()[-6000:]}")


@pytest.fixture
def start_worker(
    launch_worker: Callable[..., Worker], amqp_url: str, queues: Connection
) -> Callable[..., Worker]:
    """``start_worker(name, **env)``: a running worker on this run's RabbitMQ vhost."""

    def _start(name: str, **extra_env: str) -> Worker:
        return launch_worker(name, **{"CELERY_BROKER_URL": amqp_url, **extra_env})

    return _start
