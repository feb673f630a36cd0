#!/usr/bin/env python3
"""Horizontal scale benchmark: analysis worker processes and gateway replicas.

Two parts, each bounded in time and count, loopback only; figures as JSON lines and a table.

``events``: the analysis event pipeline of ``bench/events_pipeline.py`` (its own RabbitMQ vhost
and PostgreSQL database, removed at the end) drained by 1, 2 and 4 **separate**
``celery -A analysis_project worker --concurrency 1`` processes (as ``manage_all.py up --scale
analysis-worker=N`` and the Kubernetes Deployment scale them; not Celery's prefork
concurrency). Backlog mode: all events are published first, then the workers start and the
events/s from the first commit to the last is measured, so the publishers do not set the pace.
Per run: events/s, CPU seconds per 1,000 events of the workers (/proc, start-up excluded) and
of their PostgreSQL backends, batches (one transaction each: distinct ``processed_at``), rows
written per event (``pg_stat_database`` of the run's database), bytes per event (AMQP message
body + headers; the dedupe table's size per row; server-wide WAL, an upper bound on a shared
machine), and that the counters are exact. Then the SQL statements per batch of 1, 10 and 100
events, counted in-process with Django's ``CaptureQueriesContext`` around the real
``analysis.services.events_process``.

``gateway``: the gateway as ``manage_all.py up`` runs it (``bench/benchlib.py`` Stack: gunicorn
argv and config, Redis, the trivial upstream) with 1 then 2 replicas listening on the same port
with SO_REUSEPORT (as ``up --scale gateway=2`` does), proxied authenticated
``GET /api/playlists?limit=10`` driven by ``wrk``; req/s, p50/p99, errors and CPU seconds per
1,000 requests of all the gateway replicas (and of the upstream).

    .venv/bin/python bench/scaling.py                          # both parts, defaults
    .venv/bin/python bench/scaling.py --parts events --events 20000 --workers 1 2 4
    .venv/bin/python bench/scaling.py --parts gateway --replicas 1 2 --connections 10 50
    .venv/bin/python bench/scaling.py --parts events --events 2000 --workers 1   # quick look

The machine is shared: every figure carries the 1-minute load average when its run started.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time
import uuid

import events_pipeline
import psycopg
from benchlib import (
    ROOT,
    Stack,
    cpu_rss,
    free_port,
    load,
    lua_script,
    rerun_command,
    wait_answering,
    wrk,
)

QUERY_COUNTER = textwrap.dedent(
    """
    import json, sys
    import django
    django.setup()
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from analysis.services import event_parse, events_process
    from common.events import PLAYLIST_CREATED, TRACK_PLAYED, make_envelope
    for size in [int(x) for x in sys.argv[1:]]:
        envelopes = [
            make_envelope(TRACK_PLAYED, user_id=f"q-{size}-{i % 50}", data={"genre": "rock"})
            if i % 2 else
            make_envelope(PLAYLIST_CREATED, user_id=f"q-{size}-{i % 50}", data={"playlist_id": "p"})
            for i in range(size)
        ]
        parsed = [event_parse(envelope=e) for e in envelopes]
        with CaptureQueriesContext(connection) as ctx:
            events_process(events=parsed)
        print(json.dumps({
            "part": "queries", "batch": size, "statements": len(ctx.captured_queries),
            "sql": [q["sql"].split("(")[0][:60] for q in ctx.captured_queries],
        }))
    """
)


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def message_bytes() -> dict[str, int]:
    """Size of one event's AMQP message as the platform publishes it (body + headers, JSON)."""
    from celery import Celery

    from common.events import ROUTES, TRACK_PLAYED, make_envelope, task_headers

    app = Celery("bench-size", set_as_current=False)
    app.conf.update(task_serializer="json")
    envelope = make_envelope(TRACK_PLAYED, user_id=str(uuid.uuid4()), data={"genre": "rock"})
    message = app.amqp.as_task_v2(
        str(uuid.uuid4()), ROUTES[TRACK_PLAYED][0][0], args=[envelope], kwargs={}
    )
    body = json.dumps(message.body).encode()
    headers = json.dumps({**message.headers, **task_headers(envelope)}, default=str).encode()
    app.close()
    return {"body": len(body), "headers": len(headers)}


class ScalingBench(events_pipeline.Bench):
    """events_pipeline.Bench plus CPU of the workers and of their database backends."""

    def setup(self) -> None:
        """Also declare the analysis queue (as a worker would): in backlog mode the events are
        published before any worker has declared it, without confirms (unroutable: lost)."""
        super().setup()
        from kombu import Connection

        from common.events import ROUTES

        queues = {q.name: q for routes in ROUTES.values() for _, q in routes}
        with Connection(self.amqp_url) as conn:
            channel = conn.channel()
            for name, queue in queues.items():
                if name.startswith("analysis"):
                    queue(channel).declare()

    def start_workers(self, count: int) -> None:
        super().start_workers(count)
        self.cpu_start = sum(cpu_rss(proc.pid)[0] for proc, _ in self.workers)

    def stop_workers(self) -> None:
        if self.workers:
            self.worker_cpu = sum(cpu_rss(proc.pid)[0] for proc, _ in self.workers) - getattr(
                self, "cpu_start", 0.0
            )
            with psycopg.connect(self.pg_admin, autocommit=True) as conn:
                pids = [
                    pid
                    for (pid,) in conn.execute(
                        "SELECT pid FROM pg_stat_activity WHERE datname = %s", [self.db_name]
                    )
                ]
            self.backend_cpu = sum(cpu_rss(pid)[0] for pid in pids)
            self.backends = len(pids)
        super().stop_workers()

    def db_stats(self) -> tuple[int, int, int]:
        with psycopg.connect(self.pg_admin, autocommit=True) as conn:
            row = conn.execute(
                "SELECT tup_inserted, tup_updated, pg_current_wal_lsn() - '0/0'::pg_lsn "
                "FROM pg_stat_database WHERE datname = %s",
                [self.db_name],
            ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1]), int(row[2])

    def measure(self, workers: int) -> dict:
        before = self.db_stats()
        result = self.run(workers)
        time.sleep(1.5)  # backends flush their statistics when they exit
        after = self.db_stats()
        events = result["events"]
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(DISTINCT processed_at), "
                "pg_total_relation_size('analysis_processedevent') FROM analysis_processedevent"
            ).fetchone()
            assert row is not None
            batches, table = row
        return {
            "part": "events",
            "workers": workers,
            "events": events,
            "events_per_s": round(result["events_per_s"], 1),
            "seconds": round(result["seconds"], 2),
            "worker_cpu_s_per_1k": round(self.worker_cpu * 1000 / events, 3),
            "db_backend_cpu_s_per_1k": round(self.backend_cpu * 1000 / events, 3),
            "db_backends": self.backends,
            "batches": batches,
            "events_per_batch": round(events / max(batches, 1), 1),
            "rows_inserted_per_event": round((after[0] - before[0]) / events, 2),
            "rows_updated_per_event": round((after[1] - before[1]) / events, 2),
            "dedupe_table_bytes_per_event": round(table / events),
            "wal_bytes_per_event_upper_bound": round((after[2] - before[2]) / events),
            "exact": result["exact"],
            "load": round(result["load"], 2),
        }

    def count_queries(self, sizes: list[int]) -> list[dict]:
        out = subprocess.run(
            [sys.executable, "-c", QUERY_COUNTER, *map(str, sizes)],
            cwd=events_pipeline.PROJECT,
            env={**self.env, "LOG_LEVEL": "WARNING"},
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def events_part(args: argparse.Namespace) -> list[dict]:
    ns = argparse.Namespace(
        events=args.events,
        users=args.users,
        publishers=args.publishers,
        no_confirm=True,
        backlog=True,
        rate=0.0,
        amqp=args.amqp,
        postgres=args.postgres,
        redis=args.redis,
        log_level="WARNING",
        timeout=args.timeout,
    )
    bench = ScalingBench(ns)
    records = [{"part": "message", **message_bytes()}]
    emit(records[0])
    try:
        bench.setup()
        for count in args.workers:
            records.append(bench.measure(count))
            emit(records[-1])
        for record in bench.count_queries([1, 10, 100]):
            records.append(record)
            emit(record)
    finally:
        bench.teardown()
    return records


def gateway_part(args: argparse.Namespace) -> list[dict]:
    env = {"GATEWAY_WEB_CONCURRENCY": args.gateway_workers} if args.gateway_workers else {}
    records: list[dict] = []
    with Stack(
        users=args.users_tokens, redis_url=args.redis, env=env, extra_argv=["--reuse-port"]
    ) as stack:
        assert stack.gateway is not None and stack.upstream is not None
        replicas = [stack.gateway]
        script = lua_script(stack.tmp, "proxied", stack.tokens, path="/api/playlists?limit=10")
        for count in sorted(args.replicas):
            while len(replicas) < count:  # one more gunicorn master on the same port
                own = free_port()
                argv = [*stack.argv, "--bind", f"127.0.0.1:{own}"]
                log = stack.tmp / f"gateway-{len(replicas) + 1}.log"
                replicas.append(
                    stack._spawn(argv, env=stack.env, cwd=ROOT / "gateway_project", log=log)
                )
                wait_answering(f"http://127.0.0.1:{own}/healthz")
            for conns in args.connections:
                if args.warmup > 0:
                    wrk(stack.gateway_url, script, connections=conns, seconds=args.warmup)
                started = load()
                each_before = [cpu_rss(p.pid)[0] for p in replicas]
                up_before = cpu_rss(stack.upstream.pid)[0]
                result = wrk(stack.gateway_url, script, connections=conns, seconds=args.seconds)
                each = [cpu_rss(p.pid)[0] - b for p, b in zip(replicas, each_before, strict=True)]
                cpu = sum(each)
                upstream = cpu_rss(stack.upstream.pid)[0] - up_before
                rss = sum(cpu_rss(p.pid)[1] for p in replicas)
                records.append(
                    {
                        "part": "gateway",
                        "replicas": count,
                        "workers_per_replica": int(stack.argv[stack.argv.index("--workers") + 1]),
                        "connections": conns,
                        "requests": result.requests,
                        "req_per_s": round(result.rps, 1),
                        "p50_ms": round(result.p50_ms, 2),
                        "p99_ms": round(result.p99_ms, 2),
                        "errors": result.errors,
                        "gateway_cpu_s_per_1k": round(cpu * 1000 / max(result.requests, 1), 3),
                        "upstream_cpu_s_per_1k": round(
                            upstream * 1000 / max(result.requests, 1), 3
                        ),
                        "cpu_s_per_replica": [round(c, 2) for c in each],  # the spread
                        "gateway_rss_mb": round(rss / 2**20),
                        "load": float(started),
                    }
                )
                emit(records[-1])
    return records


# Table columns per part: (header, key, format).
COLUMNS = {
    "events": [
        ("workers", "workers", "d"),
        ("events/s", "events_per_s", ".0f"),
        ("wk CPU s/1k", "worker_cpu_s_per_1k", ".3f"),
        ("db CPU s/1k", "db_backend_cpu_s_per_1k", ".3f"),
        ("batches", "batches", "d"),
        ("ev/batch", "events_per_batch", ".1f"),
        ("ins/ev", "rows_inserted_per_event", ".2f"),
        ("upd/ev", "rows_updated_per_event", ".2f"),
        ("B/ev table", "dedupe_table_bytes_per_event", "d"),
        ("B/ev WAL<=", "wal_bytes_per_event_upper_bound", "d"),
        ("exact", "exact", ""),
        ("load", "load", ".2f"),
    ],
    "gateway": [
        ("replicas", "replicas", "d"),
        ("workers", "workers_per_replica", "d"),
        ("conns", "connections", "d"),
        ("req/s", "req_per_s", ".0f"),
        ("p50 ms", "p50_ms", ".2f"),
        ("p99 ms", "p99_ms", ".2f"),
        ("errors", "errors", "d"),
        ("gw CPU s/1k", "gateway_cpu_s_per_1k", ".3f"),
        ("RSS MB", "gateway_rss_mb", "d"),
        ("load", "load", ".2f"),
    ],
}


def table(records: list[dict]) -> None:
    for part, columns in COLUMNS.items():
        rows = [r for r in records if r["part"] == part]
        if rows:
            print("\n" + "  ".join(f"{header:>{len(header)}}" for header, _, _ in columns))
        for r in rows:
            cells = [("yes" if r[k] else "NO") if fmt == "" else r[k] for _, k, fmt in columns]
            print(
                "  ".join(f"{c:>{len(h)}{f}}" for (h, _, f), c in zip(columns, cells, strict=True))
            )
    for r in (r for r in records if r["part"] == "queries"):
        print(f"batch of {r['batch']:>3}: {r['statements']} SQL statements ({', '.join(r['sql'])})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--parts", nargs="+", choices=["events", "gateway"], default=["events", "gateway"]
    )
    parser.add_argument("--events", type=int, default=20000, help="events per worker count")
    parser.add_argument("--users", type=int, default=50, help="distinct users of the events")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--publishers", type=int, default=4, help="publishing processes")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per drain at most")
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--gateway-workers", help="GATEWAY_WEB_CONCURRENCY (default: as up)")
    parser.add_argument("--connections", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds per run")
    parser.add_argument("--users-tokens", type=int, default=1000, help="distinct gateway tokens")
    parser.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672")
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    if not 0 < args.events <= 1_000_000 or max(args.workers) > 16 or max(args.replicas) > 8:
        parser.error("bounded: --events 1..1000000, --workers <= 16, --replicas <= 8")
    emit({"part": "machine", "cores": os.cpu_count(), "load": load()})
    records: list[dict] = []
    if "events" in args.parts:
        records += events_part(args)
    if "gateway" in args.parts:
        records += gateway_part(args)
    table(records)
    print(f"\nrerun: {rerun_command()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
