#!/usr/bin/env python3
"""Benchmark of the analysis event pipeline through the real broker (not a test).

Pushes N event envelopes through RabbitMQ to real ``celery -A analysis_project worker``
processes writing to PostgreSQL, once with 1 and once with 2 worker processes, and prints the
events/s processed and the p50/p99 lag from ``occurred_at`` to the counter commit.

    .venv/bin/python bench/events_pipeline.py                      # 2000 events, 1 and 2 workers
    .venv/bin/python bench/events_pipeline.py --events 5000 --workers 1 2 4 --rate 200

It makes its own RabbitMQ vhost (rabbitmqctl) and PostgreSQL database and removes both at the
end; the workers' Redis (``--redis``, required by the settings) gets a key prefix of the run,
whose keys are deleted at the end. ``--rate`` publishes at a fixed rate (lag without a
backlog); without it the publishers go as fast as they can (throughput; the lag then includes
the time spent queued). Publishers are processes (``--publishers``) using the platform's
``publish_envelope`` with one publisher confirm at a time each; on a 2-core machine they, not
the workers, then set the pace (events/s close to publish/s): ``--no-confirm`` publishes
without waiting for confirms, ``--backlog`` publishes everything first and measures how fast
the workers drain the queue. Every run checks that the counters in the database are exactly
what the events add up to ("exact") and prints the 1-minute load average (the machine may be
shared).

    .venv/bin/python bench/events_pipeline.py --events 10000 --rate 500          # lag at 500/s
    .venv/bin/python bench/events_pipeline.py --events 10000 --no-confirm --publishers 6
    .venv/bin/python bench/events_pipeline.py --events 20000 --backlog --publishers 8
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import random
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT = ROOT / "analysis_project"
sys.path[:0] = [str(ROOT)]

import psycopg  # noqa: E402
from celery import Celery  # noqa: E402
from kombu import Connection, Producer  # noqa: E402

from common.celery_utils import publish_envelope  # noqa: E402
from common.events import (  # noqa: E402
    PLAYLIST_CREATED,
    PLAYLIST_DELETED,
    ROUTES,
    TRACK_PLAYED,
    make_envelope,
    task_headers,
)

GENRES = ["rock", "jazz", "pop", "hip hop", "classical", "electronic"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def events_for(count: int, users: int) -> list[dict]:
    rng = random.Random(7)  # noqa: S311  (reproducible load, not security)
    out = []
    for index in range(count):
        user = f"bench-{index % users}"
        kind = rng.choice([PLAYLIST_CREATED, PLAYLIST_DELETED, TRACK_PLAYED, TRACK_PLAYED])
        data = {"genre": rng.choice(GENRES)} if kind == TRACK_PLAYED else {"playlist_id": "p"}
        out.append((kind, user, data))
    return out


def _publish_chunk(amqp_url: str, chunk: list[tuple], interval: float, confirm: bool) -> None:
    """With ``confirm``: the platform's publish_envelope, one confirm at a time. Without: the
    same Celery protocol-2 messages (same headers and body) through one kombu producer, no
    confirms and no per-message producer pool, argument repr or queue declaration, so that
    the publishers, which share the 2 cores with the workers, cost less CPU."""
    app = Celery("bench-publisher", set_as_current=False)
    app.conf.update(
        broker_url=amqp_url,
        task_serializer="json",
        broker_transport_options={"confirm_publish": confirm},
    )
    next_at = time.monotonic()
    with contextlib.ExitStack() as stack:
        producer = None
        if not confirm:
            conn = stack.enter_context(Connection(amqp_url))
            producer = Producer(conn.channel(), serializer="json")
        for kind, user, data in chunk:
            if interval:
                next_at += interval
                time.sleep(max(0.0, next_at - time.monotonic()))
            envelope = make_envelope(kind, user_id=user, data=data)
            if producer is None:
                publish_envelope(app, envelope)
                continue
            for task_name, queue in ROUTES[kind]:
                task_id = str(uuid.uuid4())
                message = app.amqp.as_task_v2(
                    task_id, task_name, args=[envelope], kwargs={}, argsrepr="", kwargsrepr=""
                )
                producer.publish(
                    message.body,
                    exchange=queue.exchange,
                    routing_key=queue.routing_key,
                    headers={**message.headers, **task_headers(envelope)},
                    delivery_mode=2,
                    **message.properties,
                )
    app.close()


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        tag = secrets.token_hex(4)
        self.vhost = f"bench-{tag}"
        self.db_name = f"bench_analysis_{tag}"
        base_amqp = args.amqp.rstrip("/")
        self.amqp_url = f"{base_amqp}/{self.vhost}"
        self.pg_admin = args.postgres
        self.db_url = f"{args.postgres.rsplit('/', 1)[0]}/{self.db_name}"
        self.state = Path(tempfile.mkdtemp(prefix="bench-analysis-"))
        self.env = dict(os.environ)
        self.env.update(
            DATABASE_URL=self.db_url,
            CELERY_BROKER_URL=self.amqp_url,
            PYTHONPATH=os.pathsep.join([str(PROJECT), str(ROOT)]),
            DJANGO_SETTINGS_MODULE="analysis_project.settings",
            DEBUG="false",
            SECRET_KEY=secrets.token_urlsafe(48),
            INTERNAL_SECRET=secrets.token_urlsafe(48),
            STATE_DIR=str(self.state),
            LOG_FORMAT="json",
            LOG_LEVEL=args.log_level,
            REDIS_URL=args.redis,  # required by the settings; keys under the run's prefix
            CACHE_KEY_PREFIX=f"bench-{tag}",
        )
        self.workers: list[tuple[subprocess.Popen[bytes], int]] = []

    # ----------------------------------------------------------------- set-up and tear-down

    def setup(self) -> None:
        subprocess.run(
            ["rabbitmqctl", "-q", "add_vhost", self.vhost], check=True, stdout=subprocess.DEVNULL
        )
        subprocess.run(
            ["rabbitmqctl", "-q", "set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        with psycopg.connect(self.pg_admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.db_name}"')
        subprocess.run(
            [sys.executable, str(PROJECT / "manage.py"), "migrate", "-v", "0"],
            cwd=PROJECT,
            env=self.env,
            check=True,
        )

    def teardown(self) -> None:
        self.stop_workers()
        subprocess.run(
            ["rabbitmqctl", "-q", "delete_vhost", self.vhost],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        with (
            contextlib.suppress(Exception),
            psycopg.connect(self.pg_admin, autocommit=True) as conn,
        ):
            conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
        with contextlib.suppress(Exception):
            import redis

            client = redis.Redis.from_url(self.args.redis)
            for key in client.scan_iter(f"{self.env['CACHE_KEY_PREFIX']}*", count=1000):
                client.delete(key)
        shutil.rmtree(self.state, ignore_errors=True)

    # ----------------------------------------------------------------- workers

    def start_workers(self, count: int) -> None:
        log = (self.state / "workers.log").open("ab")
        for index in range(count):
            port = free_port()
            env = {**self.env, "ANALYSIS_WORKER_METRICS_PORT": str(port)}
            proc = subprocess.Popen(
                [
                    str(Path(sys.executable).with_name("celery")),
                    "-A",
                    "analysis_project",
                    "worker",
                    "-Q",
                    "analysis.events",
                    "-n",
                    f"bench{index}@%h",
                    "--concurrency",
                    "1",
                    "--without-gossip",
                    "--without-mingle",
                ],
                cwd=PROJECT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            self.workers.append((proc, port))
        deadline = time.monotonic() + 60
        for proc, port in self.workers:
            while True:
                if proc.poll() is not None:
                    raise SystemExit(f"a worker exited; see {self.state / 'workers.log'}")
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise SystemExit("workers did not start within 60 s") from None
                    time.sleep(0.2)

    def stop_workers(self) -> None:
        for proc, _ in self.workers:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc, _ in self.workers:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        self.workers = []

    # ----------------------------------------------------------------- one run

    def publish(self, events: list[tuple], processes: int, rate: float) -> None:
        """Publish ``events`` from ``processes`` processes (one confirm at a time each, as
        the playlist outbox relay does), at ``rate`` events/s overall (0: flat out)."""
        chunks = [events[i::processes] for i in range(processes)]
        interval = processes / rate if rate else 0.0
        context = multiprocessing.get_context("fork")
        pool = [
            context.Process(
                target=_publish_chunk,
                args=(self.amqp_url, chunk, interval, not self.args.no_confirm),
            )
            for chunk in chunks
        ]
        for proc in pool:
            proc.start()
        for proc in pool:
            proc.join()
            if proc.exitcode:
                raise SystemExit(f"a publisher failed (exit code {proc.exitcode})")

    def run(self, workers: int) -> dict[str, float]:
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            conn.execute(
                "TRUNCATE analysis_processedevent, analysis_userstats, "
                "analysis_usergenreplays, analysis_genreplays"
            )
        events = events_for(self.args.events, self.args.users)
        load = os.getloadavg()[0]  # the machine is shared: recorded with the figures
        if self.args.backlog:  # publish everything first, then measure the drain
            self.publish(events, self.args.publishers, self.args.rate)
            published = time.time()
            self.start_workers(workers)
            started = time.time()
        else:
            self.start_workers(workers)
            started = time.time()
            self.publish(events, self.args.publishers, self.args.rate)
            published = time.time()
        deadline = time.monotonic() + self.args.timeout
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            while True:
                done = conn.execute("SELECT count(*) FROM analysis_processedevent").fetchone()[0]
                if done >= len(events):
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"only {done}/{len(events)} processed in time")
                time.sleep(0.2)
            rows = conn.execute(
                "SELECT EXTRACT(EPOCH FROM processed_at - occurred_at), "
                "EXTRACT(EPOCH FROM processed_at) FROM analysis_processedevent"
            ).fetchall()
            exact = self.counts_exact(conn, events)
        self.stop_workers()
        lags = [float(lag) for lag, _ in rows]
        finished = max(float(at) for _, at in rows)
        if self.args.backlog:  # from the first commit (workers started) to the last
            started = min(float(at) for _, at in rows)
        return {
            "events": len(events),
            "seconds": finished - started,
            "events_per_s": len(events) / (finished - started),
            "publish_per_s": len(events) / max(abs(published - started), 1e-9)
            if not self.args.backlog
            else 0.0,
            "lag_p50_ms": statistics.median(lags) * 1000,
            "lag_p99_ms": percentile(lags, 99) * 1000,
            "load": load,
            "exact": exact,
        }

    @staticmethod
    def counts_exact(conn: psycopg.Connection, events: list[tuple]) -> bool:
        """The counters in the database are exactly what the events add up to."""
        want: dict[str, list[int]] = {}
        genres: dict[str, int] = {}
        for kind, user, data in events:
            row = want.setdefault(user, [0, 0, 0, 0])
            row[0] += kind == PLAYLIST_CREATED
            row[1] += kind == PLAYLIST_DELETED
            row[2] += (kind == PLAYLIST_CREATED) - (kind == PLAYLIST_DELETED)
            if kind == TRACK_PLAYED:
                row[3] += 1
                genres[data["genre"]] = genres.get(data["genre"], 0) + 1
        got = {
            user: [created, deleted, active, plays]
            for user, created, deleted, active, plays in conn.execute(
                "SELECT user_id, playlists_created, playlists_deleted, playlists_active, plays "
                "FROM analysis_userstats"
            )
        }
        got_genres = dict(conn.execute("SELECT genre, plays FROM analysis_genreplays").fetchall())
        return got == want and got_genres == genres


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[1, 2],
        help="worker process counts to measure (each --concurrency 1)",
    )
    parser.add_argument("--publishers", type=int, default=4, help="publishing processes")
    parser.add_argument(
        "--no-confirm",
        action="store_true",
        help="publish the same task messages through one kombu producer per process without "
        "waiting for a publisher confirm per message (persistent messages still; a lost one "
        "would show as a timeout): cheaper publishers that keep up with the workers on a "
        "2-core machine",
    )
    parser.add_argument(
        "--backlog",
        action="store_true",
        help="publish all events before starting the workers and measure how fast they drain "
        "the queue (events/s from the first commit to the last; lag then includes the wait)",
    )
    parser.add_argument(
        "--rate", type=float, default=0.0, help="events/s to publish (0: as fast as possible)"
    )
    parser.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672")
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument(
        "--redis",
        default="redis://127.0.0.1:6379/0",
        help="REDIS_URL for the workers (required by the settings); the run's keys live under "
        "a prefix of its own and are deleted at the end",
    )
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    bench = Bench(args)
    results = []
    try:
        bench.setup()
        for count in args.workers:
            results.append((count, bench.run(count)))
    finally:
        bench.teardown()
    mode = f"publish rate {args.rate:g}/s" if args.rate else "publishers unthrottled"
    if args.backlog:
        mode = "backlog drained"
    mode += f", {args.publishers} publishers" + (" without confirms" if args.no_confirm else "")
    print(f"\n{args.events} events, {args.users} users, {mode}, PostgreSQL, RabbitMQ, Redis")
    settings = {
        name: os.environ.get(name, "default")
        for name in (
            "ANALYSIS_BATCH_SIZE",
            "ANALYSIS_BATCH_WAIT_MS",
            "CELERY_WORKER_PREFETCH_MULTIPLIER",
        )
    }
    print("worker settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    print(
        f"{'workers':>7} {'events/s':>9} {'publish/s':>9} {'lag p50':>9} {'lag p99':>9} "
        f"{'load 1m':>8} {'counts':>7}"
    )
    for count, r in results:
        print(
            f"{count:>7} {r['events_per_s']:>9.0f} {r['publish_per_s']:>9.0f} "
            f"{r['lag_p50_ms']:>7.0f}ms {r['lag_p99_ms']:>7.0f}ms {r['load']:>8.2f} "
            f"{'exact' if r['exact'] else 'WRONG':>7}"
        )
    print("\nrerun: .venv/bin/python bench/events_pipeline.py " + " ".join(sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
