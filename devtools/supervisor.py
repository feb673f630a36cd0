"""The supervisor: starts the platform's processes, watches them, restarts them, stops them all.

Why not honcho (or foreman/overmind) and a Procfile? Honcho does the first part — start every
line of a Procfile, prefix and colour its output, stop everything on Ctrl-C — and nothing of
what the rest of this module is for:

* **No orphans, even when the launcher is SIGKILLed.** Honcho signals its children when it is
  asked to stop; killed with SIGKILL (an IDE's stop button, the OOM killer, a CI timeout) it
  leaves gunicorn, Celery and PostgreSQL running and their ports taken. Here every process runs
  in a process group of its own, a watchdog process (``WATCHDOG``) stops every group still
  alive once the launcher's pipe closes, and ``PR_SET_PDEATHSIG`` is a second line. A whole
  group is signalled, so gunicorn's and Celery's own children go too.
* **Restart, with a limit.** Honcho stops the whole platform when one process exits. ``up``
  restarts a service process that dies, as Compose's ``restart:`` does, and gives up (stopping
  everything, with the reason) after ``limit`` exits in ``window`` seconds or when a local
  server dies, since nothing can run without it.
* **Readiness and order.** Local servers start first, accept connections before migrations
  run, and stop last; ``wait_healthy`` waits for every ``/healthz`` (or a server's port)
  before ``up`` prints its URLs and before the end-to-end suite sends its first request.
* **Per process:** its own environment (each service's settings module and database), working
  folder, stop signal (PostgreSQL's fast shutdown is SIGINT), user (PostgreSQL refuses root),
  log file, metrics folder emptied before each start.
* **A Python API** the end-to-end, fault and benchmark code drive: ``kill``, ``restart``,
  ``dead``, ``add`` to a running platform, no output echoed, per-process logs.
* **Standard library only**, so no re-execution inside the virtualenv is needed.

A Procfile cannot express most of this, and the code around honcho would be what is here.

Standard library only (see devtools/project.py).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from devtools.project import ROOT, SERVICES

COLORS = ["36", "35", "33", "32", "34", "31", "96", "95", "93", "92"]


@dataclass
class ProcSpec:
    """One process of the platform: a service's program, or a local server (`service` None)."""

    name: str
    service: str | None
    argv: list[str]
    health_url: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    ready: Callable[[], bool] | None = None
    user: int | None = None
    group: int | None = None


# Runs in a process of its own (its own session) for as long as the launcher lives. The launcher
# writes "<process group> <signal>" for every process it starts; when its end of the pipe closes
# (the launcher exited, or was SIGKILLed) every group still there gets its stop signal, then
# SIGKILL after a grace period. So no process of the platform outlives the launcher.
WATCHDOG = """
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
groups = []
for line in sys.stdin:
    pgid, sig = line.split()
    groups.append((int(pgid), int(sig)))
def alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False
left = [g for g in reversed(groups) if alive(g[0])]
for pgid, sig in left:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
deadline = time.monotonic() + float(sys.argv[1])
while time.monotonic() < deadline and any(alive(p) for p, _ in left):
    time.sleep(0.2)
for pgid, _ in left:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
"""


def _set_parent_death_signal(sig: int) -> Callable[[], None]:
    """Belt and braces beside the watchdog: the child gets `sig` if the launcher dies."""

    def _preexec() -> None:
        with contextlib.suppress(Exception):
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, sig)  # PR_SET_PDEATHSIG

    return _preexec


def stop_signal(spec: ProcSpec) -> int:
    # PostgreSQL's "fast" shutdown (SIGINT) disconnects clients; SIGTERM would wait for them.
    return signal.SIGINT if spec.name == "postgres" else signal.SIGTERM


class Platform:
    """Starts processes, prefixes their output, waits for health, stops them all.

    Local servers (specs without a service) start first and stop last. A watchdog process
    stops whatever is left if the launcher dies (see WATCHDOG).
    """

    def __init__(
        self, specs: Sequence[ProcSpec], *, echo: bool = True, log_dir: Path | None = None
    ) -> None:
        self.specs = list(specs)
        self.echo = echo
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._threads: list[threading.Thread] = []
        self._color = sys.stdout.isatty()
        self._lock = threading.Lock()
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._restarts: dict[str, list[float]] = {}

    def add(self, specs: Sequence[ProcSpec]) -> None:
        self.specs.extend(specs)

    def start(self, names: Iterable[str] | None = None) -> None:
        """Start the named processes (default: every one not started yet)."""
        wanted = set(names) if names is not None else None
        for spec in self.specs:
            if spec.name in self.procs and self.procs[spec.name].poll() is None:
                continue
            if wanted is None or spec.name in wanted:
                self._spawn(spec)

    def _watch(self, pid: int, sig: int) -> None:
        if self._watchdog is None or self._watchdog.poll() is not None:
            self._watchdog = subprocess.Popen(
                [sys.executable, "-c", WATCHDOG, "15"],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        assert self._watchdog.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self._watchdog.stdin.write(f"{pid} {int(sig)}\n".encode())
            self._watchdog.stdin.flush()

    def _spawn(self, spec: ProcSpec) -> None:
        cwd = ROOT / SERVICES[spec.service][0] if spec.service else ROOT
        metrics_dir = spec.env.get("PROMETHEUS_MULTIPROC_DIR") if spec.service else None
        if metrics_dir:  # stale files from an earlier run would be summed in
            shutil.rmtree(metrics_dir, ignore_errors=True)
            Path(metrics_dir).mkdir(parents=True)
        proc = subprocess.Popen(
            spec.argv,
            cwd=cwd,
            env=spec.env or None,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_set_parent_death_signal(stop_signal(spec)),
            user=spec.user,
            group=spec.group,
        )
        self.procs[spec.name] = proc
        self._watch(proc.pid, stop_signal(spec))
        width = max(len(s.name) for s in self.specs)
        prefix = spec.name.ljust(width)
        if self._color:
            color = COLORS[self.specs.index(spec) % len(COLORS)]
            prefix = f"\033[{color}m{prefix}\033[0m"
        thread = threading.Thread(target=self._pump, args=(spec.name, prefix, proc), daemon=True)
        thread.start()
        self._threads.append(thread)

    def _pump(self, name: str, prefix: str, proc: subprocess.Popen[bytes]) -> None:
        sink = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            sink = (self.log_dir / f"{name}.log").open("ab")
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            if sink is not None:
                sink.write(raw)
                sink.flush()
            if self.echo:
                line = raw.decode(errors="replace").rstrip("\n")
                with self._lock:
                    print(f"{prefix} | {line}", flush=True)
        if sink is not None:
            sink.close()

    def dead(self) -> list[str]:
        return [name for name, proc in self.procs.items() if proc.poll() is not None]

    def wait_healthy(self, timeout: float = 120.0, names: Iterable[str] | None = None) -> None:
        """Wait until every health URL answers 200 (every server accepts connections) and
        every process still runs."""
        wanted = set(names) if names is not None else set(self.procs)
        deadline = time.monotonic() + timeout
        pending = [
            spec for spec in self.specs if spec.name in wanted and (spec.health_url or spec.ready)
        ]
        while pending:
            if self.dead():
                raise RuntimeError(f"process exited during start-up: {', '.join(self.dead())}")
            if time.monotonic() > deadline:
                names_left = ", ".join(spec.name for spec in pending)
                raise RuntimeError(f"not healthy after {timeout:.0f}s: {names_left}")
            pending = [spec for spec in pending if not _is_up(spec)]
            if pending:
                time.sleep(0.2)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the services, then the local servers: stop signal, SIGKILL after `timeout`."""
        apps = [spec.name for spec in self.specs if spec.service and spec.name in self.procs]
        local = [spec.name for spec in self.specs if not spec.service and spec.name in self.procs]
        for group in (apps, local):
            self._stop_group(group, timeout)
        for thread in self._threads:
            thread.join(timeout=2)
        if self._watchdog is not None and self._watchdog.stdin is not None:
            with contextlib.suppress(OSError):
                self._watchdog.stdin.close()  # nothing left for it to stop
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._watchdog.wait(5)

    def _stop_group(self, names: Sequence[str], timeout: float) -> None:
        specs = {spec.name: spec for spec in self.specs}
        procs = [(name, self.procs[name]) for name in names]
        for name, proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, stop_signal(specs[name]))
        deadline = time.monotonic() + timeout
        for _, proc in procs:
            remaining = max(0.1, deadline - time.monotonic())
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(remaining)
        for _, proc in procs:
            # The whole group: gunicorn and celery workers have children of their own.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)

    def restart_dead(self, *, limit: int = 5, window: float = 60.0) -> list[str]:
        """Start again every service process that exited (as Compose's `restart:` does).

        A local server that exits, or a process that dies `limit` times in `window` seconds,
        is not restarted: RuntimeError, and the caller stops the platform.
        """
        restarted = []
        now = time.monotonic()
        for name in self.dead():
            spec = next(spec for spec in self.specs if spec.name == name)
            recent = [t for t in self._restarts.get(name, []) if now - t < window]
            code = self.procs[name].returncode
            if spec.service is None:
                raise RuntimeError(f"local server {name} exited (code {code})")
            if len(recent) >= limit:
                raise RuntimeError(f"{name} exited {limit} times in {window:.0f}s (code {code})")
            self._restarts[name] = [*recent, now]
            self._spawn(spec)
            restarted.append(f"{name} (exit code {code})")
        return restarted

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.procs[name].pid, sig)
        self.procs[name].wait(15)

    def restart(self, name: str) -> None:
        """Kill one process (SIGKILL, as a crash would) and start it again."""
        self.kill(name)
        self._spawn(next(spec for spec in self.specs if spec.name == name))


def _is_up(spec: ProcSpec) -> bool:
    if spec.ready is not None:
        return spec.ready()
    return _answers(spec.health_url or "")


def _answers(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False
