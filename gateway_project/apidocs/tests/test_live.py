"""The public schema built from the real services, running as processes (as `manage_all up`)."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from django.test import override_settings
from drf_spectacular.validation import validate_schema
from proxy import upstreams

import manage_all
from apidocs.tests.conftest import SERVICES, saved_schema
from common.testing import server_url

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_schema(url: str, proc: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{url}: the service exited with {proc.returncode} (see its log)")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer")


@pytest.fixture(scope="module")
def running_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """auth, playlist and analysis under gunicorn on free ports. /schema reads no data: the
    database they are given does not exist, so a query would fail loudly."""
    state = tmp_path_factory.mktemp("live-state")
    no_database = server_url("postgres").rsplit("/", 1)[0] + "/ms_never_created"
    overrides = {
        "AUTH_DATABASE_URL": no_database,
        "ANALYSIS_DATABASE_URL": no_database,
        "MONGODB_URI": server_url("mongodb"),
        "STATE_DIR": str(state),
        "DEBUG": "false",
        "WEB_CONCURRENCY": "1",
        "LOG_LEVEL": "WARNING",
    }
    procs: dict[str, subprocess.Popen[bytes]] = {}
    urls: dict[str, str] = {}
    logs: list[object] = []
    try:
        for name in SERVICES:
            port = _free_port()
            env = manage_all.service_env(name, {**overrides, f"{name.upper()}_PORT": str(port)})
            if name == "auth":  # its signing key, as `manage_all up` prepares it
                manage_all.manage("auth", "ensure_jwt_keys", env=env)
            log = open(Path(state) / f"{name}.log", "wb")  # noqa: SIM115 - closed below
            logs.append(log)
            folder, _ = manage_all.SERVICES[name]
            procs[name] = subprocess.Popen(
                manage_all.gunicorn_argv(name, port, env),
                cwd=manage_all.ROOT / folder,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            urls[name] = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        for name, url in urls.items():
            _wait_for_schema(f"{url}/schema?format=json", procs[name], deadline)
        yield urls
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in logs:
            log.close()  # type: ignore[attr-defined]


@pytest.fixture
def live_gateway(running_services: dict[str, str]) -> Iterator[dict[str, str]]:
    config = {
        name: {"url": url, "connect_timeout": 1.0, "read_timeout": 10.0}
        for name, url in running_services.items()
    }
    with override_settings(UPSTREAMS=config):
        try:
            yield running_services
        finally:
            upstreams.reset()


def test_public_schema_from_the_running_services(live_gateway, client):
    response = client.get("/api/schema", {"format": "json"})
    assert response.status_code == 200
    schema = response.json()
    validate_schema(schema)
    assert schema["x-upstreams"] == {name: {"status": "ok"} for name in SERVICES}
    live = {
        name: requests.get(f"{url}/schema?format=json", timeout=10).json()
        for name, url in live_gateway.items()
    }
    assert set(schema["paths"]) == {path for s in live.values() for path in s["paths"]}
    # The saved fixtures the merge tests use are still what the services serve.
    for name in SERVICES:
        assert live[name]["paths"] == saved_schema(name)["paths"], (
            f"{name}'s schema changed: regenerate apidocs/tests/fixtures/{name}.json "
            "(see apidocs/tests/fixtures/README.md)"
        )
        assert live[name]["components"] == saved_schema(name)["components"], name


def test_services_serve_their_own_schema_outside_api(live_gateway):
    for url in live_gateway.values():
        assert requests.get(f"{url}/schema", timeout=10).status_code == 200
        assert requests.get(f"{url}/docs", timeout=10).status_code == 200
        assert requests.get(f"{url}/api/schema", timeout=10).status_code == 404
