#!/usr/bin/env python3
"""End-to-end benchmark (issue 7, item 4): the whole platform, through the gateway.

    .venv/bin/python bench/end_to_end.py                 # 15 s per run after a 5 s warm-up
    .venv/bin/python bench/end_to_end.py --seconds 5 --warmup 2

Starts every process exactly as ``python manage_all.py up`` does (manage_all.Platform and
platform_specs) on free ports, against slices of the real servers made for this run: two
PostgreSQL databases, a RabbitMQ vhost (rabbitmqctl), a Redis key prefix; removes them all at
the end. Then, with ``wrk`` on 127.0.0.1:
1. ``POST /api/playlists`` (creates: playlist document + outbox entry, published with publisher
   confirms to RabbitMQ) at 10 connections; afterwards it waits until the analysis service has
   counted every created playlist (``GET /api/analysis``), so "published" is checked, not assumed;
2. ``GET /api/analysis`` with a warm cache (every user's summary read once first) at 10 and 50
   connections.
Only differences from ``up``: the gateway's and auth's rate limits are lifted (the load comes
from a handful of users on one IP) and log lines go to files. Figures: requests/s, p50, p99,
errors, CPU s per 1,000 requests of the gateway's and the upstream's process trees, RSS.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from benchlib import (
    WrkResult,
    cpu_rss,
    free_port,
    lua_script,
    renice_group,
    rerun_command,
    wrk,
)

import manage_all

BODY = json.dumps({"name": "bench", "tracks": [{"title": "Song 1", "genre": "rock"}, "Song 2"]})


def call(method: str, url: str, token: str | None = None, body: object = None) -> dict:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310
    with urllib.request.urlopen(request, timeout=15) as response:  # noqa: S310
        return json.loads(response.read() or b"{}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--users", type=int, default=5)
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--amqp-host", default="127.0.0.1:5672")
    parser.add_argument("--drain-timeout", type=float, default=180.0)
    args = parser.parse_args()
    if not shutil.which("rabbitmqctl"):
        raise SystemExit("rabbitmqctl is needed to make a vhost of this run")

    import psycopg
    import redis

    tag = uuid.uuid4().hex[:8]
    tmp = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    vhost = f"bench-e2e-{tag}"
    prefix = f"bench-e2e-{tag}"
    databases = {name: f"bench_e2e_{name}_{tag}" for name in ("auth", "analysis")}
    base = args.postgres.rsplit("/", 1)[0]
    platform = None
    results: list[tuple[str, int, WrkResult, float, float]] = []
    try:
        with psycopg.connect(args.postgres, autocommit=True) as conn:
            for name in databases.values():
                conn.execute(f'CREATE DATABASE "{name}"')
        subprocess.run(
            ["rabbitmqctl", "-q", "add_vhost", vhost], check=True, stdout=subprocess.DEVNULL
        )
        subprocess.run(
            ["rabbitmqctl", "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        ports = {name: free_port() for name in (*manage_all.SERVICES, "flower")}
        overrides = {
            "STATE_DIR": str(tmp / "state"),
            "DEBUG": "false",
            "SECRET_KEY": "bench-" + uuid.uuid4().hex,
            "INTERNAL_SECRET": "bench-" + uuid.uuid4().hex,
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "INFO",
            "AUTH_DATABASE_URL": f"{base}/{databases['auth']}",
            "ANALYSIS_DATABASE_URL": f"{base}/{databases['analysis']}",
            "REDIS_URL": args.redis,
            "CACHE_KEY_PREFIX": prefix,
            "CELERY_BROKER_URL": f"amqp://guest:guest@{args.amqp_host}/{vhost}",
            "GATEWAY_USER_RATE": "1000000/min",
            "GATEWAY_ANON_RATE": "1000000/min",
            "REGISTER_THROTTLE_RATE_IP": "1000/min",
            "FLOWER_PORT": str(ports["flower"]),
            **{f"{name.upper()}_PORT": str(port) for name, port in ports.items()},
        }
        for key in ("MONGODB_URI", "DATABASE_URL"):
            os.environ.pop(key, None)
        (tmp / "state").mkdir(parents=True)
        manage_all.load_environment()
        manage_all.prepare(overrides)
        specs = manage_all.platform_specs(overrides)
        platform = manage_all.Platform(specs, echo=False, log_dir=tmp / "logs")
        platform.start()
        platform.wait_healthy(timeout=180)
        for proc in platform.procs.values():
            renice_group(proc.pid)
        print("platform: " + ", ".join(s.name for s in specs), flush=True)
        gateway = f"http://127.0.0.1:{ports['gateway']}"
        tokens = []
        for i in range(args.users):
            answer = call(
                "POST",
                f"{gateway}/api/auth/register",
                body={
                    "username": f"bench_{tag}_{i}",
                    "password": "correct horse battery staple 42",
                },
            )
            tokens.append(answer["token"])
        gw_pid = platform.procs["gateway"].pid

        def measured(label: str, upstream: str, conns: int, script: Path) -> WrkResult:
            up_pid = platform.procs[upstream].pid
            warm = 0
            if args.warmup > 0:
                warm = wrk(gateway, script, connections=conns, seconds=args.warmup).requests
            up_before = cpu_rss(up_pid)
            result = wrk(gateway, script, connections=conns, seconds=args.seconds, measure=gw_pid)
            up_after = cpu_rss(up_pid)
            up_cpu = (up_after[0] - up_before[0]) * 1000 / max(1, result.requests)
            results.append((label, conns, result, up_cpu, up_after[1] / 2**20))
            print(
                f"  {label:<24} {conns:>3} conn {result.rps:>7.0f} req/s  p50 "
                f"{result.p50_ms:.1f} ms  p99 {result.p99_ms:.1f} ms  err {result.errors}  "
                f"load {result.load}",
                flush=True,
            )
            result.warmup_requests = warm  # type: ignore[attr-defined]
            return result

        creates = lua_script(tmp, "create", tokens, method="POST", path="/api/playlists", body=BODY)
        started = time.monotonic()
        created = measured("POST /api/playlists", "playlist", 10, creates)
        # Every create (warm-up included) must reach analysis through outbox + RabbitMQ.
        deadline = time.monotonic() + args.drain_timeout
        counted = 0
        while time.monotonic() < deadline:
            counted = sum(
                call("GET", f"{gateway}/api/analysis", t)["playlists_created"] for t in tokens
            )
            if counted >= created.requests + created.warmup_requests:  # type: ignore[attr-defined]
                break
            time.sleep(1)
        drained = time.monotonic() - started
        print(
            f"  analysis counted {counted} created playlists of "
            f"{created.requests + created.warmup_requests} sent (warm-up included), "  # type: ignore[attr-defined]
            f"{drained:.0f} s after the measured create run began",
            flush=True,
        )

        reads = lua_script(tmp, "read", tokens, path="/api/analysis")
        for t in tokens:
            call("GET", f"{gateway}/api/analysis", t)  # warm the cache
        for conns in (10, 50):
            measured("GET /api/analysis (warm)", "analysis", conns, reads)
    finally:
        if platform is not None:
            platform.stop()
        with (
            contextlib.suppress(Exception),
            psycopg.connect(args.postgres, autocommit=True) as conn,
        ):
            for name in databases.values():
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        subprocess.run(
            ["rabbitmqctl", "-q", "delete_vhost", vhost],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        with contextlib.suppress(Exception):
            client = redis.Redis.from_url(args.redis)
            for key in client.scan_iter(f"{prefix}*", count=1000):
                client.delete(key)
        shutil.rmtree(tmp, ignore_errors=True)

    print(
        "\nrun                        conns   req/s  p50 ms  p99 ms  errors  "
        "gw CPU s/1k  upstream CPU s/1k  gw RSS MB  load"
    )
    for label, conns, r, up_cpu, _ in results:
        print(
            f"{label:<26} {conns:>5} {r.rps:>7.0f} {r.p50_ms:>7.1f} {r.p99_ms:>7.1f} "
            f"{r.errors:>7} {r.cpu_per_1000:>12.3f} {up_cpu:>18.3f} {r.rss_mb:>10.0f}  {r.load}"
        )
    print(f"\nrerun: {rerun_command()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
