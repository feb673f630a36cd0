"""`python manage_all.py up` itself, with no server configured: real local servers, data that
survives a restart, and nothing left running after Ctrl-C or a SIGKILL of the launcher."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
SERVER_VARS = (
    "DATABASE_URL",
    "AUTH_DATABASE_URL",
    "ANALYSIS_DATABASE_URL",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "CELERY_BROKER_KEY_PREFIX",
    "MONGODB_URI",
    "MONGODB_DB",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def processes_of(state: Path) -> list[int]:
    """Every process whose environment names this state folder (the launcher's children)."""
    marker = f"STATE_DIR={state}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


class Up:
    """One `manage_all.py up` run in the background, its output in a file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "manage_all.py"), "up"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )

    def wait_up(self, timeout: float = 180.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log.read_text(errors="replace")
            if re.search(r"all \d+ processes up in", text.split("=== up ===")[-1]):
                return time.monotonic() - self.started
            if self.proc.poll() is not None:
                raise AssertionError(f"up exited with {self.proc.returncode}:\n{text[-4000:]}")
            time.sleep(0.3)
        raise AssertionError(f"up not healthy after {timeout}s:\n{self.log.read_text()[-4000:]}")


def wait_gone(state: Path, timeout: float = 40.0) -> list[int]:
    deadline = time.monotonic() + timeout
    left = processes_of(state)
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = processes_of(state)
    return left


def test_up_keeps_data_across_restarts_and_leaves_nothing_running(tmp_path):
    state = Path(os.environ["STATE_DIR"]) / f"up-{uuid.uuid4().hex[:6]}"
    state.mkdir(parents=True)
    ports = {
        var: free_port()
        for var in (
            "GATEWAY_PORT",
            "AUTH_PORT",
            "PLAYLIST_PORT",
            "ANALYSIS_PORT",
            "FLOWER_PORT",
            "LOCAL_POSTGRES_PORT",
            "LOCAL_REDIS_PORT",
            "LOCAL_MONGODB_PORT",
        )
    }
    env = {k: v for k, v in os.environ.items() if k not in SERVER_VARS}
    env.update({k: str(v) for k, v in ports.items()})
    env.update(
        STATE_DIR=str(state),
        LOG_FORMAT="text",
        WEB_CONCURRENCY="1",
        REGISTER_THROTTLE_RATE_IP="1000/min",
        LOGIN_THROTTLE_RATE_IP="1000/min",
    )
    log = tmp_path / "up.log"
    gw = f"http://127.0.0.1:{ports['GATEWAY_PORT']}"
    session = requests.Session()
    try:
        up = Up(env, log)
        first = up.wait_up()
        username, password = f"up_{uuid.uuid4().hex[:8]}", "correct horse battery staple 42"
        token = session.post(
            f"{gw}/api/auth/register",
            json={"username": username, "password": password},
            timeout=10,
        ).json()["token"]
        auth = {"Authorization": f"Bearer {token}"}
        made = session.post(
            f"{gw}/api/playlists",
            json={"name": "kept", "tracks": [{"title": "So What", "genre": "jazz"}]},
            headers=auth,
            timeout=10,
        )
        assert made.status_code == 201, made.text
        playlist_id = made.json()["id"]
        played = session.post(
            f"{gw}/api/playlists/{playlist_id}/plays", json={"track": 0}, headers=auth, timeout=10
        )
        assert played.status_code == 202

        def analytics():
            body = session.get(f"{gw}/api/analysis", headers=auth, timeout=10).json()
            return body["playlists_created"], body["plays"]

        deadline = time.monotonic() + 20
        while analytics() != (1, 1) and time.monotonic() < deadline:
            time.sleep(0.3)
        assert analytics() == (1, 1)

        # Ctrl-C: a clean stop; nothing of the platform is left.
        up.proc.send_signal(signal.SIGINT)
        assert up.proc.wait(60) == 0
        assert wait_gone(state, 10) == []

        # Started again: the same user, playlist and analytics come back.
        log.open("a").write("=== up ===\n")
        up = Up(env, log)
        second = up.wait_up()
        token = session.post(
            f"{gw}/api/auth/login", json={"username": username, "password": password}, timeout=10
        ).json()["token"]
        auth = {"Authorization": f"Bearer {token}"}
        again = session.get(f"{gw}/api/playlists/{playlist_id}", headers=auth, timeout=10)
        assert again.status_code == 200
        assert again.json()["name"] == "kept"
        assert analytics() == (1, 1)

        # SIGKILL of the launcher: the watchdog stops every process it started.
        up.proc.kill()
        up.proc.wait(10)
        assert wait_gone(state) == []

        # ...and the next up starts cleanly (stale PID file, no stray server).
        log.open("a").write("=== up ===\n")
        up = Up(env, log)
        up.wait_up()
        assert "stale" in log.read_text()
        up.proc.send_signal(signal.SIGTERM)
        assert up.proc.wait(60) == 0
        print(f"first up healthy in {first:.1f}s, second in {second:.1f}s")
    finally:
        session.close()
        for pid in processes_of(state):
            os.kill(pid, signal.SIGKILL)
        subprocess.run(["rm", "-rf", str(state)], check=False)
