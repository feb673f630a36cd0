"""Attacks through the gateway on the real auth service (gunicorn, its own PostgreSQL database).

A deeply nested login body must not open the auth breaker for everyone. Before
the fix, DRF's JSONParser raised RecursionError on ``{"username": [[[[...]]]]}`` (5,000
levels, ~10 KB): auth answered 500, the gateway counted it, and a few such requests made login,
register and refresh answer 503 to every user. Now: 400 from auth's parser, no breaker failure,
and login keeps working.

Behind a load balancer (``GATEWAY_NUM_PROXIES=1``) auth's per-address login
limits stay per client, and a client's spoofed X-Forwarded-For does not change its address.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import requests
from django.conf import settings
from django.test import Client, override_settings

import manage_all
from common.testing import run_id, server_url
from proxy import upstreams
from proxy.tests.conftest import free_port

pytestmark = pytest.mark.integration

DEPTH = 5000
ATTEMPTS = 30
DEEP_LOGIN = '{"username": ' + "[" * DEPTH + "]" * DEPTH + ', "password": "x"}'


def _wait_answering(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"auth exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer")


@pytest.fixture(scope="module")
def live_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The auth service as `manage_all up` runs it, on a free port and a database of its own."""
    pg = server_url("postgres")
    server_url("redis")
    database = f"ms_gw_attack_{run_id()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(pg, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    state = tmp_path_factory.mktemp("attack-state")
    port = free_port()
    env = manage_all.service_env(
        "auth",
        {
            "AUTH_DATABASE_URL": f"{pg.rsplit('/', 1)[0]}/{database}",
            "AUTH_PORT": str(port),
            "STATE_DIR": str(state),
            "DEBUG": "false",
            "WEB_CONCURRENCY": "1",
            "LOG_LEVEL": "WARNING",
            # The gateway forwards the host the client used: the test client's.
            "ALLOWED_HOSTS": "testserver,127.0.0.1,localhost",
            # Every request of this test comes from 127.0.0.1 (the auth suite tests these).
            "LOGIN_THROTTLE_RATE_IP": "1000/min",
            "REGISTER_THROTTLE_RATE_IP": "1000/min",
        },
    )
    log = state / "auth.log"
    proc = None
    try:
        manage_all.manage("auth", "migrate", "--noinput", "-v", "0", env=env)
        manage_all.manage("auth", "ensure_jwt_keys", env=env)
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                manage_all.gunicorn_argv("auth", port, env),
                cwd=manage_all.ROOT / "auth_project",
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{port}"
        _wait_answering(f"{url}/api/auth/.well-known/jwks.json", proc, log)
        yield url
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        with psycopg.connect(pg, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@pytest.fixture
def gateway_to_auth(live_auth: str) -> Iterator[str]:
    auth = {"url": live_auth, "connect_timeout": 1.0, "read_timeout": 10.0}
    with override_settings(
        UPSTREAMS={name: dict(auth) for name in ("auth", "playlist", "analysis")},
        JWKS_URL=f"{live_auth}/api/auth/.well-known/jwks.json",
        # Stricter than the defaults (20 calls): were the attack counted, 5 calls would open it.
        BREAKER_MIN_CALLS=5,
        BREAKER_FAILURE_RATE=0.5,
        GATEWAY_ANON_RATE="1000/min",
    ):
        try:
            yield live_auth
        finally:
            upstreams.reset()


def window_failures(redis_slice) -> int:
    namespace = upstreams.breaker_namespace("auth")
    keys = list(redis_slice.client.scan_iter(f"{namespace}:window:fails:*"))
    return sum(int(v or 0) for v in redis_slice.client.mget(keys)) if keys else 0


def test_deep_login_bodies_are_400_and_never_open_the_auth_breaker(gateway_to_auth, redis_slice):
    client = Client()
    username = f"deep_{uuid.uuid4().hex[:8]}"
    password = "correct horse battery staple 42"
    credentials = {"username": username, "password": password}
    registered = client.post("/api/auth/register", credentials, content_type="application/json")
    assert registered.status_code == 201, registered.content
    assert len(DEEP_LOGIN) < 11_000

    for _ in range(ATTEMPTS):
        response = client.post("/api/auth/login", data=DEEP_LOGIN, content_type="application/json")
        assert response.status_code == 400, response.content
        assert response.json()["code"] == "parse_error"
    # The same body through register (the other public route that parses JSON).
    for _ in range(5):
        response = client.post(
            "/api/auth/register", data=DEEP_LOGIN, content_type="application/json"
        )
        assert response.status_code == 400 and response.json()["code"] == "parse_error"

    breaker = upstreams.get("auth").breaker
    assert breaker.current_state == "closed"
    assert window_failures(redis_slice) == 0
    login = client.post("/api/auth/login", credentials, content_type="application/json")
    assert login.status_code == 200, login.content
    assert login.json()["token"]
    assert os.environ.get("REDIS_URL")  # the breaker state above was the shared Redis one


def test_behind_a_load_balancer_login_limits_stay_per_client(gateway_to_auth):
    """Auth's failed-login limit per username + address (5/min) through the gateway, with one
    trusted proxy (10.0.0.5) in front. Before the gateway resolved the address itself, auth saw
    the balancer's address for everyone: one client locked the account for all clients."""
    client = Client()
    username = f"lb_{uuid.uuid4().hex[:8]}"
    password = "correct horse battery staple 42"
    credentials = {"username": username, "password": password}
    assert (
        client.post("/api/auth/register", credentials, content_type="application/json").status_code
        == 201
    )
    wrong = {"username": username, "password": "wrong password"}

    def login(body, forwarded_for):
        return client.post(
            "/api/auth/login",
            body,
            content_type="application/json",
            REMOTE_ADDR="10.0.0.5",
            HTTP_X_FORWARDED_FOR=forwarded_for,
        )

    rest_framework = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    with override_settings(REST_FRAMEWORK=rest_framework):
        statuses = [login(wrong, "198.51.100.1").status_code for _ in range(10)]
        assert statuses[0] == 401 and 429 in statuses, statuses  # the guesser is held back
        # The same guesser claiming another address in front of the balancer's entry: still it.
        assert login(credentials, "198.51.100.2, 198.51.100.1").status_code == 429
        # Another client behind the same balancer signs in.
        response = login(credentials, "198.51.100.2")
        assert response.status_code == 200, response.content
