"""Which local servers a command needs, and the variables that point the services at them.

A server no variable names (``AUTH_DATABASE_URL``/``ANALYSIS_DATABASE_URL``, ``REDIS_URL``,
``MONGODB_URI``) runs from the virtualenv's wheels (devtools/servers.py says how), as a process
of the supervisor's table, with its data under the state folder. One-off commands (``migrate``,
``check``, ``manage``) use the servers of a running ``up``, or start them for their own run.

Standard library only (see devtools/project.py).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from devtools import servers
from devtools.project import ORM_SERVICES, STATE, running_up, venv_python
from devtools.supervisor import Platform, ProcSpec


def redis_db_url(url: str, db: int) -> str:
    """The same Redis server, another database number (the broker lives in its own)."""
    base, _, last = url.rpartition("/")
    return f"{base}/{db}" if last.isdigit() and base.count("/") >= 2 else f"{url.rstrip('/')}/{db}"


def local_servers(
    state: Path, env: dict[str, str], *, durable: bool = True, free_ports: bool = False
) -> tuple[list[servers.LocalServer], dict[str, str]]:
    """The servers `env` does not name, and the variables that point the services at them.

    Ports come from LOCAL_<NAME>_PORT (or free ones, for test runs); data from `state`.
    """
    wanted = []
    if not (env.get("AUTH_DATABASE_URL") and env.get("ANALYSIS_DATABASE_URL")):
        wanted.append("postgres")
    if not env.get("REDIS_URL"):
        wanted.append("redis")
    if not env.get("MONGODB_URI"):
        wanted.append("mongodb")
    exports: dict[str, str] = {}
    if env.get("REDIS_URL") and not env.get("CELERY_BROKER_URL"):
        exports["CELERY_BROKER_URL"] = redis_db_url(env["REDIS_URL"], 1)
    if not wanted:
        return [], exports
    binaries = servers.find_binaries(venv_python())
    found: list[servers.LocalServer] = []
    for name in wanted:
        port = (
            servers.free_port()
            if free_ports
            else int(env.get(servers.PORT_VARS[name]) or servers.DEFAULT_PORTS[name])
        )
        servers.check_port_free(
            port, what=f"the local {name} server", variable=servers.PORT_VARS[name]
        )
        if name == "postgres":
            server = servers.postgres(state, binaries, port=port, durable=durable)
            base = server.url.rsplit("/", 1)[0]
            for service in ORM_SERVICES:
                exports.setdefault(f"{service.upper()}_DATABASE_URL", f"{base}/{service}")
        elif name == "redis":
            server = servers.redis(state, binaries, port=port, durable=durable)
            exports["REDIS_URL"] = server.url
            if not env.get("CELERY_BROKER_URL"):
                # Celery's Redis transport: unacknowledged messages come back after a worker
                # dies, which kombu's filesystem transport cannot (docs/local-servers.md, "Broker").
                exports["CELERY_BROKER_URL"] = redis_db_url(server.url, 1)
        else:
            server = servers.mongodb(state, binaries, port=port)
            exports["MONGODB_URI"] = server.url
        found.append(server)
    for key in ("AUTH_DATABASE_URL", "ANALYSIS_DATABASE_URL"):
        if env.get(key):
            exports.pop(key, None)  # a database the caller named wins
    return found, exports


def server_specs(found: Sequence[servers.LocalServer]) -> list[ProcSpec]:
    return [
        ProcSpec(
            server.name,
            None,
            server.argv,
            ready=server.ready,
            user=server.user,
            group=server.group,
            env={**os.environ},
        )
        for server in found
    ]


def create_databases(found: Sequence[servers.LocalServer], exports: dict[str, str]) -> None:
    """A database per ORM service on the local PostgreSQL (idempotent)."""
    postgres = next((server for server in found if server.name == "postgres"), None)
    if postgres is None:
        return
    names = [
        exports[f"{service.upper()}_DATABASE_URL"].rsplit("/", 1)[1]
        for service in ORM_SERVICES
        if f"{service.upper()}_DATABASE_URL" in exports
    ]
    servers.ensure_databases(servers.find_binaries(venv_python()), postgres.url, names)


@contextlib.contextmanager
def local_servers_for_command(*, echo: bool = False) -> Iterator[None]:
    """For one-off commands (migrate, check, manage): the local servers in os.environ.

    While `up` runs they are its servers (same ports); otherwise they run for this command.
    """
    state = Path(os.environ.get("STATE_DIR", STATE))
    if running_up():
        env = dict(os.environ)
        for name, var in servers.PORT_VARS.items():
            env.setdefault(var, str(servers.DEFAULT_PORTS[name]))
        # Same URLs `up` exported: computed, nothing started.
        exports = _urls_of_running(env)
        os.environ.update(exports)
        yield
        return
    found, exports = local_servers(state, dict(os.environ))
    os.environ.update(exports)
    platform = Platform(server_specs(found), echo=echo, log_dir=state / "logs")
    try:
        platform.start()
        platform.wait_healthy(60)
        create_databases(found, exports)
        yield
    finally:
        platform.stop()


def _urls_of_running(env: dict[str, str]) -> dict[str, str]:
    exports: dict[str, str] = {}
    ports = {name: int(env[var]) for name, var in servers.PORT_VARS.items()}
    if not (env.get("AUTH_DATABASE_URL") and env.get("ANALYSIS_DATABASE_URL")):
        for service in ORM_SERVICES:
            exports[f"{service.upper()}_DATABASE_URL"] = (
                f"postgres://postgres@127.0.0.1:{ports['postgres']}/{service}"
            )
    if not env.get("REDIS_URL"):
        exports["REDIS_URL"] = f"redis://127.0.0.1:{ports['redis']}/0"
    if not env.get("CELERY_BROKER_URL"):
        exports["CELERY_BROKER_URL"] = redis_db_url(env.get("REDIS_URL") or exports["REDIS_URL"], 1)
    if not env.get("MONGODB_URI"):
        exports["MONGODB_URI"] = f"mongodb://127.0.0.1:{ports['mongodb']}"
    return exports
