"""A TCP proxy on 127.0.0.1 that a fault test can cut, slow down and restore (asyncio).

Put one between the services and a server (RabbitMQ, Redis, PostgreSQL, MongoDB) or an
upstream: ``cut()`` closes the port and every open connection (the server is gone: connections
are refused), ``restore()`` listens again on the same port, ``latency`` delays every chunk
forwarded in either direction. ``stall()`` stops reading what clients send (connections stay
open, the server's side still flows: what a RabbitMQ under a memory or disk alarm does to a
publisher, TCP back-pressure) until ``resume()``. The machine's shared servers are never
touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading


class FaultProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        with socket.socket() as probe:  # a fixed port: the services keep their URL
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.latency = 0.0
        self._loop = asyncio.new_event_loop()
        self._flowing = asyncio.Event()  # cleared while stalled (client to server only)
        self._flowing.set()
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        threading.Thread(target=self._loop.run_forever, daemon=True).start()
        self.restore()

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        await asyncio.gather(
            self._pipe(reader, up_writer, stalls=True), self._pipe(up_reader, writer)
        )

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, stalls: bool = False
    ) -> None:
        try:
            while True:
                if stalls:
                    await self._flowing.wait()
                chunk = await reader.read(65536)
                if not chunk:
                    break
                if stalls and not self._flowing.is_set():
                    await self._flowing.wait()  # read just before the stall: held back too
                if self.latency:
                    await asyncio.sleep(self.latency)
                writer.write(chunk)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()

    def restore(self) -> None:
        async def _start() -> None:
            self._server = await asyncio.start_server(
                self._handle, "127.0.0.1", self.port, reuse_address=True
            )

        if self._server is None:
            self._run(_start())

    def cut(self) -> None:
        async def _stop() -> None:
            if self._server is not None:
                self._server.close()
                self._server = None
            for writer in list(self._writers):
                transport = writer.transport
                with contextlib.suppress(Exception):
                    transport.abort()  # RST, as a dead host's kernel would answer
            self._writers.clear()

        self._run(_stop())

    def stall(self) -> None:
        self._loop.call_soon_threadsafe(self._flowing.clear)

    def resume(self) -> None:
        self._loop.call_soon_threadsafe(self._flowing.set)

    def close(self) -> None:
        self.resume()
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)

    def url(self, url: str) -> str:
        """``url`` with its host and port replaced by this proxy's."""
        scheme, rest = url.split("://", 1)
        credentials, at, tail = rest.rpartition("@")
        _, slash, path = tail.partition("/")
        return f"{scheme}://{credentials}{at}127.0.0.1:{self.port}{slash}{path}"
