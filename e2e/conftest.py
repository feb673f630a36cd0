"""The end-to-end suite: the whole platform as real processes, started by the launcher (devtools/).

The services run exactly as `python manage_all.py up` runs them (same Platform class, same
process table: several gunicorn workers, both outbox relays, both Celery workers, Flower), on
free ports, against this test run's own slices of the real servers: two PostgreSQL databases,
a RabbitMQ vhost (or, without RabbitMQ off CI, Celery's Redis transport under the run's
prefix), a Redis key prefix and a database on the run's SecantusDB server.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pymongo
import pytest
import requests

from common.testing import run_id, server_url, servers_required

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devtools.platform import platform_specs, prepare  # noqa: E402
from devtools.project import SERVICES  # noqa: E402
from devtools.supervisor import Platform  # noqa: E402

ARTIFACTS = ROOT / "artifacts" / "e2e"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RunningPlatform:
    def __init__(self, platform: Platform, ports: dict[str, int], env: dict[str, str]):
        self.platform = platform
        self.ports = ports
        self.env = env
        self.gateway = f"http://127.0.0.1:{ports['gateway']}"

    def url(self, service: str, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}{path}"


def _admin_connection(pg_url: str) -> psycopg.Connection:
    return psycopg.connect(pg_url, autocommit=True)


@contextlib.contextmanager
def start_platform(route=None, extra: dict[str, str] | None = None):
    """The whole platform on this run's slices of the real servers.

    ``route(kind, url)`` may replace the URL the services get for a server (``postgres``,
    ``redis``, ``amqp``, ``mongodb``), e.g. with a fault-injecting proxy's; set-up and clean-up
    always use the real one.
    """
    route = route or (lambda _kind, url: url)
    pg = server_url("postgres")
    redis = server_url("redis")
    mongodb = server_url("mongodb")
    if servers_required():
        server_url("amqp")  # CI runs the platform on RabbitMQ, as Compose does
    # Off CI without RabbitMQ: Celery's Redis transport, the single-machine default.
    broker = os.environ.get("TEST_AMQP_URL") or os.environ["TEST_BROKER_URL"]
    suffix = f"{run_id()}_{uuid.uuid4().hex[:4]}"
    databases = {name: f"ms_e2e_{name}_{suffix}" for name in ("auth", "analysis")}
    with _admin_connection(pg) as conn:
        for name in databases.values():
            conn.execute(f'CREATE DATABASE "{name}"')
    base = route("postgres", pg).rsplit("/", 1)[0]
    ports = {
        name: free_port() for name in (*SERVICES, "flower", "analysis-worker", "playlist-relay")
    }
    state = Path(os.environ["STATE_DIR"]) / f"e2e-{suffix}"
    overrides = {
        "STATE_DIR": str(state),
        "DEBUG": "false",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
        "AUTH_DATABASE_URL": f"{base}/{databases['auth']}",
        "ANALYSIS_DATABASE_URL": f"{base}/{databases['analysis']}",
        "REDIS_URL": route("redis", redis),
        "CELERY_BROKER_URL": route("amqp", broker),
        "MONGODB_URI": route("mongodb", mongodb),
        "MONGODB_DB": f"ms_e2e_playlist_{suffix}",
        "WEB_CONCURRENCY": "2",
        # Every test registers and logs in from 127.0.0.1: the per-IP throttles (tested in the
        # auth suite) would refuse the suite's own traffic.
        "REGISTER_THROTTLE_RATE_IP": "1000/min",
        "LOGIN_THROTTLE_RATE_IP": "1000/min",
        # Likewise the gateway's per-IP and per-user rates (tested in the gateway suite): the
        # attack and fault suites send thousands of requests from one address and user.
        "GATEWAY_ANON_RATE": "100000/min",
        "GATEWAY_USER_RATE": "100000/min",
        "GUNICORN_THREADS": "4",
        "FLOWER_PORT": str(ports["flower"]),
        "ANALYSIS_WORKER_METRICS_PORT": str(ports["analysis-worker"]),
        "PLAYLIST_RELAY_METRICS_PORT": str(ports["playlist-relay"]),
        **{f"{name.upper()}_PORT": str(port) for name, port in ports.items() if "-" not in name},
        **(extra or {}),
    }
    state.mkdir(parents=True, exist_ok=True)
    running = Platform([], echo=False, log_dir=ARTIFACTS / "logs" / suffix)
    try:
        prepare(overrides)
        running.add(platform_specs(overrides))
        running.start()
        running.wait_healthy(timeout=120)
        yield RunningPlatform(running, ports, overrides)
    finally:
        running.stop()
        pymongo.MongoClient(mongodb).drop_database(overrides["MONGODB_DB"])
        with _admin_connection(pg) as conn:
            for name in databases.values():
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def platform():
    with start_platform() as running:
        yield running


def settle(read, expected, *, timeout=30.0, hold=3.0):
    """Wait until `read()` equals `expected`, then check it stays so for `hold` seconds
    (a duplicate delivered late would move it past `expected`)."""
    deadline = time.monotonic() + timeout
    value = read()
    while value != expected and time.monotonic() < deadline:
        time.sleep(0.25)
        value = read()
    assert value == expected, f"got {value}, expected {expected}"
    until = time.monotonic() + hold
    while time.monotonic() < until:
        time.sleep(0.5)
        assert read() == expected, "counted twice: a value moved past the exact total"


@pytest.fixture
def api(platform):
    session = requests.Session()
    session.headers["Accept"] = "application/json"
    yield session
    session.close()


@pytest.fixture
def user(platform, api):
    """A freshly registered user: (username, password, token, refresh)."""
    username = f"e2e_{uuid.uuid4().hex[:10]}"
    password = "correct horse battery staple 42"
    response = api.post(
        f"{platform.gateway}/api/auth/register",
        json={"username": username, "password": password},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return {
        "username": username,
        "password": password,
        "token": body["token"],
        "refresh": body["refresh"],
        "id": str(body["user"]["id"]),
    }
