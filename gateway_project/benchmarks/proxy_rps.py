"""Proxied requests per second of the gateway: gunicorn as `up` runs it, a trivial upstream, wrk.

    .venv/bin/python gateway_project/benchmarks/proxy_rps.py [--redis URL] [--seconds 10]

Starts a minimal keep-alive HTTP upstream (asyncio, answers a fixed JSON body and a JWKS),
the gateway under gunicorn (gthread, GATEWAY_WEB_CONCURRENCY / GUNICORN_THREADS from the
environment, defaults 2 x 4), and runs ``wrk`` against ``GET /api/playlists`` with 200 distinct
users' RS256 tokens, then stops everything and removes its Redis keys. Everything listens on
127.0.0.1 only; the load is bounded by ``--seconds``. The upstream and wrk share the machine's
cores with the gateway, so the figure is a lower bound of what the gateway alone sustains.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
ROOT = PROJECT.parent
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_upstream(port: int, jwks: bytes) -> None:
    """The upstream process: fixed answers, HTTP/1.1 keep-alive, as cheap as possible."""
    body = b'{"count":0,"results":[]}'
    ok = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )
    keys = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        len(jwks),
        jwks,
    )

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                if length:
                    await reader.readexactly(length)
                writer.write(keys if b"jwks.json" in head.split(b"\r\n", 1)[0] else ok)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def make_tokens(folder: Path, users: int) -> bytes:
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "bench", "use": "sig", "alg": "RS256"})
    now = int(time.time())
    tokens = [
        jwt.encode(
            {
                "user_id": str(i),
                "username": f"user{i}",
                "token_type": "access",
                "jti": uuid.uuid4().hex,
                "iat": now,
                "exp": now + 3600,
                "iss": os.environ.get("JWT_ISSUER", "musicstream-auth"),
                "aud": os.environ.get("JWT_AUDIENCE", "musicstream"),
            },
            key,
            algorithm="RS256",
            headers={"kid": "bench"},
        )
        for i in range(users)
    ]
    listed = ",".join(f'"{token}"' for token in tokens)
    (folder / "tokens.lua").write_text(
        f"tokens = {{{listed}}}\n"
        "request = function()\n"
        "  local t = tokens[math.random(#tokens)]\n"
        "  local headers = {['Authorization'] = 'Bearer ' .. t}\n"
        "  return wrk.format('GET', '/api/playlists?limit=10', headers)\n"
        "end\n"
    )
    return json.dumps({"keys": [jwk]}).encode()


def wait_answering(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 (fixed local URL)
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {timeout} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", help="REDIS_URL for the gateway (breakers, cache)")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--serve-upstream", nargs=2, metavar=("PORT", "JWKS_FILE"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.serve_upstream:
        serve_upstream(int(args.serve_upstream[0]), Path(args.serve_upstream[1]).read_bytes())
        return 0
    wrk = shutil.which("wrk")
    if not wrk:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        folder = Path(tmp)
        (folder / "jwks.json").write_bytes(make_tokens(folder, users=200))
        up_port, gw_port = free_port(), free_port()
        prefix = f"gwbench-{uuid.uuid4().hex[:8]}"
        env = dict(os.environ)
        upstream_url = f"http://127.0.0.1:{up_port}"
        env.update(
            {
                "PYTHONPATH": os.pathsep.join([str(PROJECT), str(ROOT)]),
                "DJANGO_SETTINGS_MODULE": "gateway_project.settings",
                "DEBUG": "false",
                "SECRET_KEY": env.get("SECRET_KEY", "bench"),
                "INTERNAL_SECRET": env.get("INTERNAL_SECRET", "bench"),
                "LOG_LEVEL": env.get("LOG_LEVEL", "WARNING"),
                "STATE_DIR": str(folder / "state"),
                "CACHE_KEY_PREFIX": prefix,
                "AUTH_SERVICE_URL": upstream_url,
                "PLAYLIST_SERVICE_URL": upstream_url,
                "ANALYSIS_SERVICE_URL": upstream_url,
            }
        )
        env.pop("REDIS_URL", None)
        if args.redis:
            env["REDIS_URL"] = args.redis
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--serve-upstream",
                    str(up_port),
                    str(folder / "jwks.json"),
                ]
            ),
            subprocess.Popen(
                [
                    str(VENV_BIN / "gunicorn"),
                    "gateway_project.wsgi:application",
                    "--bind",
                    f"127.0.0.1:{gw_port}",
                    "--workers",
                    env.get("GATEWAY_WEB_CONCURRENCY", "2"),
                    "--worker-class",
                    "gthread",
                    "--threads",
                    env.get("GUNICORN_THREADS", "4"),
                    "--keep-alive",
                    "5",
                    "--chdir",
                    str(PROJECT),
                    "--log-level",
                    "warning",
                ],
                env=env,
            ),
        ]
        try:
            base = f"http://127.0.0.1:{gw_port}"
            wait_answering(base + "/healthz")
            script = str(folder / "tokens.lua")
            common = [wrk, "-t2", f"-c{args.connections}", "-s", script]
            subprocess.run([*common, "-d3s", base], check=True, capture_output=True)  # warm-up
            subprocess.run([*common, f"-d{args.seconds}s", "--latency", base], check=True)
        finally:
            # The gateway first (it finishes what is in flight), then its upstream.
            for proc in reversed(procs):
                proc.terminate()
                proc.wait(timeout=15)
            if args.redis:
                import redis

                client = redis.Redis.from_url(args.redis)
                for key in client.scan_iter(f"{prefix}*", count=1000):
                    client.delete(key)
    return 0


if __name__ == "__main__":
    sys.exit(main())
