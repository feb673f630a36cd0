"""The shared gunicorn settings, on a real gunicorn (gthread) serving a one-line application."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

CONF = Path(__file__).resolve().parent.parent / "gunicorn_conf.py"
APP = "def app(environ, start_response):\n    start_response('200 OK', [])\n    return [b'ok']\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_connections_that_send_nothing_do_not_hold_the_threads(tmp_path):
    """40 connections that never send a byte, on one worker of one thread: a request sent
    after them is answered at once (gunicorn's own 5 s wait per new connection would have
    kept it waiting over three minutes)."""
    (tmp_path / "tinyapp.py").write_text(APP)
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "BIND_HOST": "127.0.0.1",
        "WEB_CONCURRENCY": "1",
        "GUNICORN_THREADS": "1",
        "GUNICORN_KEEPALIVE": "30",  # the idle connections stay for the whole test
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    gunicorn = Path(sys.executable).with_name("gunicorn")
    server = subprocess.Popen(
        [str(gunicorn), "-c", str(CONF), "--chdir", str(tmp_path), "tinyapp:app"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    idle: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(f"http://127.0.0.1:{port}/", timeout=5).ok:
                    break
            assert time.monotonic() < deadline, "gunicorn did not start"
            time.sleep(0.2)
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]
        time.sleep(0.5)  # every one accepted and handed to the thread before the request
        answer = requests.get(f"http://127.0.0.1:{port}/", timeout=10)
        assert answer.text == "ok"
    finally:
        for sock in idle:
            sock.close()
        server.terminate()
        server.wait(15)
