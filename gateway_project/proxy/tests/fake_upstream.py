"""A real HTTP upstream for the gateway tests: a stdlib server on a free 127.0.0.1 port.

It records every request, answers whatever a test scripts (status, headers, body, delay, or a
gate to hold the answer), serves a JWKS, and can be stopped to play a dead service.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

JWKS_PATH = "/api/auth/.well-known/jwks.json"


@dataclass
class Recorded:
    method: str
    path: str
    headers: Message  # case-insensitive, like HTTP
    body: bytes
    client_port: int = 0  # tells kept-alive connections apart


@dataclass
class Answer:
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    delay: float = 0.0
    gate: threading.Event | None = None


Script = Callable[[Recorded], Answer | None]


class FakeUpstream:
    """Start with ``start()``; ``stop()`` frees the port (connections are then refused)."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.jwks: dict[str, Any] = {"keys": []}
        self.jwks_fetches = 0
        self.script: Script | None = None
        self.received = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self._connections: set[socket.socket] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def calls(self, prefix: str = "/api/") -> list[Recorded]:
        """Requests received on paths under ``prefix`` (the JWKS fetches excluded)."""
        return [
            r
            for r in list(self.requests)
            if r.path.startswith(prefix) and not r.path.startswith(JWKS_PATH)
        ]

    def wait_for_calls(self, count: int, timeout: float = 5.0) -> bool:
        with self.received:
            return self.received.wait_for(lambda: len(self.calls()) >= count, timeout)

    def _answer(self, record: Recorded) -> Answer:
        if record.path.startswith(JWKS_PATH):
            self.jwks_fetches += 1
            return Answer(
                200, [("Content-Type", "application/json")], json.dumps(self.jwks).encode()
            )
        if self.script is not None:
            answer = self.script(record)
            if answer is not None:
                return answer
        echo = {"method": record.method, "path": record.path}
        return Answer(200, [("Content-Type", "application/json")], json.dumps(echo).encode())

    def start(self, port: int = 0) -> FakeUpstream:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                fake._connections.add(self.connection)

            def finish(self) -> None:
                fake._connections.discard(self.connection)
                super().finish()

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                record = Recorded(
                    self.command, self.path, self.headers, body, self.client_address[1]
                )
                with fake.received:
                    fake.requests.append(record)
                    fake.received.notify_all()
                answer = fake._answer(record)
                if answer.gate is not None:
                    answer.gate.wait(10)
                if answer.delay:
                    threading.Event().wait(answer.delay)
                self.send_response(answer.status)
                names = {name.lower() for name, _ in answer.headers}
                for name, value in answer.headers:
                    self.send_header(name, value)
                if "content-length" not in names and answer.status not in (204, 304):
                    self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                if self.command != "HEAD" and answer.status not in (204, 304):
                    self.wfile.write(answer.body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle
            do_TRACE = do_QUERY = _handle

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # clients that hang up (timeouts, stopped tests) are expected here

        server = Server(("127.0.0.1", port), Handler)
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        # Kept-alive connections too: a stopped upstream answers nothing at all.
        for conn in list(self._connections):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
