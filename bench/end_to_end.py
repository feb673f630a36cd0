#!/usr/bin/env python3
"""End-to-end benchmark: the whole platform, through the gateway.

    .venv/bin/python bench/end_to_end.py                 # 15 s per run after a 5 s warm-up
    .venv/bin/python bench/end_to_end.py --seconds 10 --warmup 3
    .venv/bin/python bench/end_to_end.py --broker redis  # Celery's Redis transport
    .venv/bin/python bench/end_to_end.py --mongodb mongodb://127.0.0.1:27017  # a real MongoDB

Starts every process exactly as ``python manage_all.py up`` does (devtools' Platform and
platform_specs: gunicorn workers per service, the auth and playlist ``outbox_relay`` processes,
the analysis and playlist Celery workers, Flower) on free ports, against slices of real servers
made for this run, all removed at the end:
- PostgreSQL: a database for auth and one for analysis (``--postgres``);
- Redis: a key prefix of the run (``--redis``: cache, revocations, throttles, breaker state);
- MongoDB for the playlists: a SecantusDB server of this run (``devtools.localservers``,
  not durable, data in the run's temporary folder), or ``--mongodb URI``; either way a
  ``MONGODB_DB`` of the run, dropped at the end;
- broker: a RabbitMQ vhost (rabbitmqctl), as in Compose; ``--broker redis``: Celery's Redis
  transport on ``--redis``'s server, database 1, under a key prefix of the run (the transport
  of the single-machine default).
Then, with ``wrk`` on 127.0.0.1:
1. ``POST /api/playlists`` (creates: playlist document + outbox entry in one MongoDB write; the
   playlist ``outbox_relay`` process publishes it to the broker) at 10 connections; afterwards
   it waits until the analysis service has counted every created playlist
   (``GET /api/analysis``), so "published" is checked, not assumed;
2. ``GET /api/analysis`` with a warm cache (every user's summary read once first) at 10 and 50
   connections.
Only differences from ``up``: the gateway's and auth's rate limits are lifted (the load comes
from a handful of users on one IP) and log lines go to files. Figures: requests/s, p50, p99,
errors, CPU s per 1,000 requests of the gateway's and the upstream's process trees and of every
process tree of the run (relays, workers, Flower and its own MongoDB server included; not the
machine's PostgreSQL, Redis or RabbitMQ), the gateway's RSS, the 1-minute load average (the
machine may be shared), and for the creates the time until analysis counted them all and the
CPU they cost until then.
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

from devtools.env import load_environment
from devtools.localservers import local_servers, redis_db_url, server_specs
from devtools.platform import platform_specs, prepare
from devtools.project import SERVICES
from devtools.supervisor import Platform

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
    parser.add_argument(
        "--broker",
        choices=("rabbitmq", "redis"),
        default="rabbitmq",
        help="Celery broker: a RabbitMQ vhost of the run (as Compose), or Celery's Redis "
        "transport on --redis's server, database 1 (as the single-machine default)",
    )
    parser.add_argument(
        "--mongodb",
        default="",
        help="MONGODB_URI of a MongoDB server to use (default: a SecantusDB server of this run)",
    )
    parser.add_argument("--drain-timeout", type=float, default=180.0)
    args = parser.parse_args()
    if args.broker == "rabbitmq" and not shutil.which("rabbitmqctl"):
        raise SystemExit("rabbitmqctl is needed to make a vhost of this run (or --broker redis)")

    import psycopg
    import pymongo
    import redis

    tag = uuid.uuid4().hex[:8]
    tmp = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    vhost = f"bench-e2e-{tag}"
    prefix = f"bench-e2e-{tag}"
    databases = {name: f"bench_e2e_{name}_{tag}" for name in ("auth", "analysis")}
    mongo_db = f"bench_e2e_{tag}"
    broker_prefix = f"{prefix}-broker-"
    base = args.postgres.rsplit("/", 1)[0]
    if args.broker == "redis":
        broker_url = redis_db_url(args.redis, 1)
    else:
        broker_url = f"amqp://guest:guest@{args.amqp_host}/{vhost}"
    servers_platform = None
    platform = None
    mongodb_uri = args.mongodb
    results: list[tuple[str, int, WrkResult, float, float]] = []  # + CPU of every process
    try:
        with psycopg.connect(args.postgres, autocommit=True) as conn:
            for name in databases.values():
                conn.execute(f'CREATE DATABASE "{name}"')
        if args.broker == "rabbitmq":
            subprocess.run(
                ["rabbitmqctl", "-q", "add_vhost", vhost], check=True, stdout=subprocess.DEVNULL
            )
            subprocess.run(
                ["rabbitmqctl", "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        servers_env = {
            "AUTH_DATABASE_URL": f"{base}/{databases['auth']}",
            "ANALYSIS_DATABASE_URL": f"{base}/{databases['analysis']}",
            "REDIS_URL": args.redis,
            "CELERY_BROKER_URL": broker_url,
        }
        if not mongodb_uri:
            # Every server is named but MongoDB: local_servers starts only SecantusDB.
            found, exports = local_servers(
                tmp / "servers", servers_env, durable=False, free_ports=True
            )
            servers_platform = Platform(
                server_specs(found), echo=False, log_dir=tmp / "server-logs"
            )
            servers_platform.start()
            servers_platform.wait_healthy(timeout=60)
            mongodb_uri = exports["MONGODB_URI"]
        ports = {name: free_port() for name in (*SERVICES, "flower")}
        overrides = {
            "STATE_DIR": str(tmp / "state"),
            "DEBUG": "false",
            "SECRET_KEY": "bench-" + uuid.uuid4().hex,
            "INTERNAL_SECRET": "bench-" + uuid.uuid4().hex,
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "INFO",
            **servers_env,
            "CACHE_KEY_PREFIX": prefix,
            "CELERY_BROKER_KEY_PREFIX": broker_prefix,  # the Redis transport's keys
            "MONGODB_URI": mongodb_uri,
            "MONGODB_DB": mongo_db,
            "GATEWAY_USER_RATE": "1000000/min",
            "GATEWAY_ANON_RATE": "1000000/min",
            "REGISTER_THROTTLE_RATE_IP": "1000/min",
            "FLOWER_PORT": str(ports["flower"]),
            **{f"{name.upper()}_PORT": str(port) for name, port in ports.items()},
        }
        os.environ.pop("DATABASE_URL", None)
        (tmp / "state").mkdir(parents=True)
        load_environment()
        prepare(overrides)
        specs = platform_specs(overrides)
        platform = Platform(specs, echo=False, log_dir=tmp / "logs")
        platform.start()
        platform.wait_healthy(timeout=180)
        for proc in platform.procs.values():
            renice_group(proc.pid)
        print("platform: " + ", ".join(s.name for s in specs), flush=True)
        print(
            f"servers: PostgreSQL {base}, Redis {args.redis}, broker {broker_url}"
            f"{f' (key prefix {broker_prefix})' if args.broker == 'redis' else ''}, "
            f"MongoDB {mongodb_uri}/{mongo_db}"
            f"{' (SecantusDB of this run)' if servers_platform else ''}",
            flush=True,
        )
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

        def run_cpu() -> dict[str, float]:
            """CPU seconds so far of every process tree this run started (the services'
            processes and its own servers; not the machine's PostgreSQL, Redis, RabbitMQ)."""
            procs = {**(servers_platform.procs if servers_platform else {}), **platform.procs}
            return {name: cpu_rss(proc.pid)[0] for name, proc in procs.items()}

        def per_1000(before: dict[str, float], requests: int) -> dict[str, float]:
            after = run_cpu()
            return {
                name: (cpu - before.get(name, 0.0)) * 1000 / max(1, requests)
                for name, cpu in after.items()
            }

        def by_process(cpu: dict[str, float]) -> str:
            ranked = sorted(cpu.items(), key=lambda item: -item[1])
            return ", ".join(f"{name} {value:.2f}" for name, value in ranked if value >= 0.01)

        def measured(label: str, upstream: str, conns: int, script: Path) -> WrkResult:
            up_pid = platform.procs[upstream].pid
            warm = 0
            if args.warmup > 0:
                warm = wrk(gateway, script, connections=conns, seconds=args.warmup).requests
            up_before = cpu_rss(up_pid)
            all_before = run_cpu()
            result = wrk(gateway, script, connections=conns, seconds=args.seconds, measure=gw_pid)
            up_after = cpu_rss(up_pid)
            every = per_1000(all_before, result.requests)
            up_cpu = (up_after[0] - up_before[0]) * 1000 / max(1, result.requests)
            results.append((label, conns, result, up_cpu, sum(every.values())))
            print(
                f"  {label:<24} {conns:>3} conn {result.rps:>7.0f} req/s  p50 "
                f"{result.p50_ms:.1f} ms  p99 {result.p99_ms:.1f} ms  err {result.errors}  "
                f"load {result.load}",
                flush=True,
            )
            print(f"    CPU s/1k by process tree: {by_process(every)}", flush=True)
            result.warmup_requests = warm  # type: ignore[attr-defined]
            return result

        creates = lua_script(tmp, "create", tokens, method="POST", path="/api/playlists", body=BODY)
        before_creates = run_cpu()
        started = time.monotonic()
        created = measured("POST /api/playlists", "playlist", 10, creates)
        ended = time.monotonic()
        # Every create (warm-up included) must reach analysis through outbox, relay, broker.
        deadline = time.monotonic() + args.drain_timeout
        counted = 0
        while time.monotonic() < deadline:
            counted = sum(
                call("GET", f"{gateway}/api/analysis", t)["playlists_created"] for t in tokens
            )
            if counted >= created.requests + created.warmup_requests:  # type: ignore[attr-defined]
                break
            time.sleep(1)
        drained = time.monotonic()
        print(
            f"  analysis counted {counted} created playlists of "
            f"{created.requests + created.warmup_requests} sent (warm-up included), "  # type: ignore[attr-defined]
            f"{drained - started:.0f} s after the first create (warm-up), "
            f"{drained - ended:.0f} s after the last",
            flush=True,
        )
        # Everything the creates cost, relay, broker hops and counting included (the
        # once-a-second polling above too): from the warm-up's start until all were counted.
        sent = created.requests + created.warmup_requests  # type: ignore[attr-defined]
        drain_cpu = per_1000(before_creates, sent)
        print(
            f"  CPU s per 1,000 creates, warm-up start to all counted: "
            f"{sum(drain_cpu.values()):.2f} ({by_process(drain_cpu)})",
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
        if mongodb_uri:
            with (
                contextlib.suppress(Exception),
                pymongo.MongoClient(mongodb_uri, serverSelectionTimeoutMS=5000) as client,
            ):
                client.drop_database(mongo_db)
        if servers_platform is not None:
            servers_platform.stop()
        with (
            contextlib.suppress(Exception),
            psycopg.connect(args.postgres, autocommit=True) as conn,
        ):
            for name in databases.values():
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if args.broker == "rabbitmq":
            subprocess.run(
                ["rabbitmqctl", "-q", "delete_vhost", vhost],
                check=False,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        for url, pattern in ((args.redis, f"{prefix}*"), (broker_url, f"{broker_prefix}*")):
            if not url.startswith(("redis://", "rediss://")):
                continue
            with contextlib.suppress(Exception):
                client = redis.Redis.from_url(url)
                for key in client.scan_iter(pattern, count=1000):
                    client.delete(key)
        shutil.rmtree(tmp, ignore_errors=True)

    print(
        "\nrun                        conns   req/s  p50 ms  p99 ms  errors  "
        "gw CPU s/1k  upstream CPU s/1k  all CPU s/1k  gw RSS MB  load"
    )
    for label, conns, r, up_cpu, all_cpu in results:
        print(
            f"{label:<26} {conns:>5} {r.rps:>7.0f} {r.p50_ms:>7.1f} {r.p99_ms:>7.1f} "
            f"{r.errors:>7} {r.cpu_per_1000:>12.3f} {up_cpu:>18.3f} {all_cpu:>13.3f} "
            f"{r.rss_mb:>10.0f}  {r.load}"
        )
    print(
        "(upstream: the web process tree of the service called; all: every process tree of the "
        "run, its own MongoDB server included, not the machine's PostgreSQL, Redis or RabbitMQ)"
    )
    print(f"\nrerun: {rerun_command()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
