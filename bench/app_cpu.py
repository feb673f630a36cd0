#!/usr/bin/env python3
"""CPU per request of the services' Django apps alone: no HTTP server, no load tool, one thread.

    .venv/bin/python bench/app_cpu.py                      # every case, 5 x 2,000 requests each
    .venv/bin/python bench/app_cpu.py --cases gateway-proxied --profile   # where the CPU goes

The wrk benchmarks (bench/gateway.py, bench/end_to_end.py) measure the whole machine: their
requests/s and even their CPU per request move by 10-30 % between identical runs on a shared
2-core machine (scheduling, the GIL convoy of threaded workers, loopback traffic charged to
whichever process sends). This one calls each app's WSGI callable in a loop in its own process
and reads that process's CPU time (user + system, the upstream's and Redis' excluded), so a code
change can be compared before/after within a few percent. What it leaves out is the server's
share (gunicorn's parsing, polling and thread hand-off: the gap between these figures and
bench/gateway.py's CPU s per 1,000 requests).

Cases, each in a process of its own with the service's own settings, ``devtools.env.service_env``
environment, Redis (``--redis``; a key prefix of the run, removed at the end), multiprocess
metrics and INFO JSON logging (to /dev/null):
- ``gateway-floor``: ``GET /bench/floor`` (bench/gateway.py's (b): JWT check, revocation read);
- ``gateway-proxied``: ``GET /api/playlists?limit=10`` through the proxy to the trivial upstream
  (bench/trivial_upstream.py; bench/gateway.py's (c));
- ``analysis-read``: ``GET /api/analysis`` with a warm cache and the signed user context the
  gateway would send (a PostgreSQL database of the run on the ``--postgres`` server, created and
  dropped by the script: a warm read does not touch it).
Prints min and median microseconds of CPU per request over the repetitions.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchlib import DEFAULT_REDIS, ROOT, free_port, make_keys, rerun_command, wait_answering

from devtools.env import service_env
from devtools.project import SERVICES

CASES = {
    "gateway-floor": ("gateway", "/bench/floor"),
    "gateway-proxied": ("gateway", "/api/playlists?limit=10"),
    "analysis-read": ("analysis", "/api/analysis"),
}
USERS = 50


def _environ(path: str, headers: dict[str, str]) -> dict[str, Any]:
    route, _, query = path.partition("?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": route,
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_ACCEPT": "application/json",
        "HTTP_USER_AGENT": "app_cpu",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }
    for name, value in headers.items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    return environ


def _child(args: argparse.Namespace) -> None:
    """Runs in the case's own process: set up the service, loop, print one JSON line."""
    case, requests, repeats, profile = args.child, args.requests, args.repeats, args.profile
    service, path = CASES[case]
    folder, _ = SERVICES[service]
    tmp = Path(tempfile.mkdtemp(prefix="bench-appcpu-"))
    tag = uuid.uuid4().hex[:8]
    prefix = f"bench-{tag}"
    database = f"bench_appcpu_{tag}" if service == "analysis" else None
    overrides = {
        "DEBUG": "false",
        "SECRET_KEY": "bench-" + uuid.uuid4().hex,
        "INTERNAL_SECRET": "bench-" + uuid.uuid4().hex,
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
        "STATE_DIR": str(tmp / "state"),
        "CACHE_KEY_PREFIX": prefix,
        "GATEWAY_BENCH_ENDPOINTS": "true",
        "GATEWAY_USER_RATE": "1000000/min",
        "GATEWAY_ANON_RATE": "1000000/min",
    }
    upstream = None
    headers_for: Callable[[int], dict[str, str]]
    if service == "gateway":
        jwks, tokens = make_keys(USERS)
        (tmp / "jwks.json").write_bytes(jwks)
        port = free_port()
        upstream = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "bench" / "trivial_upstream.py"),
                *("--port", str(port), "--jwks", str(tmp / "jwks.json")),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        overrides.update(
            {"AUTH_SERVICE_URL": url, "PLAYLIST_SERVICE_URL": url, "ANALYSIS_SERVICE_URL": url}
        )
        wait_answering(url + "/")

        def headers_for(i: int) -> dict[str, str]:
            return {"Authorization": f"Bearer {tokens[i % USERS]}"}

    env = service_env(service, overrides)
    env["REDIS_URL"] = args.redis
    # Settings require a broker; a read never publishes, so nothing connects to it.
    env.setdefault("CELERY_BROKER_URL", args.redis)
    if database:
        import psycopg

        with psycopg.connect(args.postgres, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')
        env["DATABASE_URL"] = f"{args.postgres.rsplit('/', 1)[0]}/{database}"
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp / "prometheus")
    (tmp / "prometheus").mkdir()
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = f"{folder}.settings"
    os.chdir(ROOT / folder)
    sys.path.insert(0, str(ROOT / folder))
    try:
        import importlib
        import logging

        from django.core.management import call_command

        application = importlib.import_module(f"{folder}.wsgi").application
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(open(os.devnull, "w"))  # noqa: SIM115
        if service == "analysis":
            call_command("migrate", verbosity=0)
            from common.context import Signed, service_key, sign

            # A read may repeat its context within its minute (only writes are single-use).
            target = Signed(audience="analysis", method="GET", path=path)
            signed = [
                sign({"id": str(i), "username": f"user{i}"}, key=service_key(), target=target)
                for i in range(USERS)
            ]

            def headers_for(i: int) -> dict[str, str]:
                return signed[i % USERS]

        status: list[str] = []

        def start_response(line: str, headers: list[Any], exc_info: Any = None) -> None:
            status.append(line)

        def run(count: int) -> None:
            for i in range(count):
                answer = application(_environ(path, headers_for(i)), start_response)
                b"".join(answer)
                answer.close()
            if not status[-1].startswith("200"):
                raise SystemExit(f"{case}: {path} answered {status[-1]}")

        run(min(requests, 500))  # warm-up: token cache, pools, the read cache
        if profile:
            import cProfile
            import pstats

            profiler = cProfile.Profile(time.process_time)
            profiler.enable()
            run(requests)
            profiler.disable()
            stats = pstats.Stats(profiler, stream=sys.stderr)
            stats.sort_stats("cumulative").print_stats(45)
        figures = []
        for _ in range(repeats):
            started = time.process_time()
            run(requests)
            figures.append((time.process_time() - started) / requests * 1e6)
        figures.sort()
        print(json.dumps({"case": case, "min": figures[0], "median": figures[len(figures) // 2]}))
    finally:
        if upstream is not None:
            upstream.terminate()
            upstream.wait(10)
        if database:
            import psycopg

            with psycopg.connect(args.postgres, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        import redis

        client = redis.Redis.from_url(env["REDIS_URL"])
        for key in client.scan_iter(f"{prefix}*", count=1000):
            client.delete(key)
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES))
    parser.add_argument("--requests", type=int, default=2000, help="requests per repetition")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="cProfile (CPU time) to stderr")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("TEST_POSTGRES_URL")
        or os.environ.get("DATABASE_URL")
        or "postgres://postgres@127.0.0.1:5432/postgres",
        help="a PostgreSQL server (any database on it) where the run creates and drops its own",
    )
    parser.add_argument(
        "--redis",
        default=os.environ.get("BENCH_REDIS_URL") or os.environ.get("REDIS_URL") or DEFAULT_REDIS,
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return 0
    print(f"load {Path('/proc/loadavg').read_text().split()[0]}", flush=True)
    print("case               CPU us/request: min   median")
    for case in args.cases:
        argv = [sys.executable, __file__, "--child", case, "--requests", str(args.requests)]
        argv += ["--repeats", str(args.repeats), "--postgres", args.postgres, "--redis", args.redis]
        argv += ["--profile"] if args.profile else []
        done = subprocess.run(argv, stdout=subprocess.PIPE, text=True, check=True, timeout=600)
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{case:<18} {figures['min']:>18.0f} {figures['median']:>8.0f}", flush=True)
    print(f"\nrerun: {rerun_command()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
