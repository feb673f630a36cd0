"""A tiny, fast HTTP/1.1 server (asyncio, keep-alive) that answers every request with small JSON.

It stands in for an upstream service in the gateway benchmarks, so the figures measure the
gateway, not the upstream:  python bench/trivial_upstream.py --port 3999 [--jwks FILE]

With ``--jwks FILE`` a request whose path contains ``jwks.json`` gets that file's content (the
auth service's public keys), so the gateway can verify the benchmark's RS256 tokens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from pathlib import Path

BODY = b'{"ok":true,"items":[]}'


def response(body: bytes) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\nConnection: keep-alive\r\n\r\n"
        + body
    )


RESPONSE = response(BODY)
JWKS_RESPONSE = RESPONSE


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:].strip() or 0)
            if length:
                await reader.readexactly(length)
            first = head[: head.find(b"\r\n")]
            writer.write(JWKS_RESPONSE if b"jwks.json" in first else RESPONSE)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def serve(port: int) -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=3999)
    parser.add_argument("--jwks", type=Path, help="file answered for paths containing jwks.json")
    args = parser.parse_args()
    if args.jwks:
        JWKS_RESPONSE = response(args.jwks.read_bytes())
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port))
