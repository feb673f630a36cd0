"""The commands of ``manage_all.py``: up, migrate, check, test, reset, manage.

Each command brings up what it needs (virtualenv, environment, local servers) and hands the
work to its module: devtools/platform.py and devtools/supervisor.py run the platform,
devtools/testing.py the suites. Standard library only (see devtools/project.py).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable

from devtools import servers
from devtools.env import load_environment
from devtools.localservers import (
    create_databases,
    local_servers,
    local_servers_for_command,
    server_specs,
)
from devtools.platform import (
    SCALABLE,
    manage,
    parse_scale,
    platform_ports,
    platform_specs,
    prepare,
)
from devtools.project import (
    FLOWER_PORT,
    ORM_SERVICES,
    SERVICES,
    STATE,
    UP_PID,
    log,
    running_up,
)
from devtools.supervisor import Platform
from devtools.testing import SUITES, run_checks, run_suites
from devtools.venv import bootstrap

DESCRIPTION = (
    "One entry point for the whole platform: set up, run, migrate, check and test every service."
)


def cmd_up(args: argparse.Namespace) -> int:
    bootstrap()
    load_environment()
    try:  # --scale NAME=N wins over LAUNCHER_SCALE's NAME=N
        scale = parse_scale(",".join([os.environ.get("LAUNCHER_SCALE", ""), *args.scale]))
    except ValueError as exc:
        log(str(exc))
        return 2
    if scale:
        os.environ["LAUNCHER_SCALE"] = ",".join(f"{name}={n}" for name, n in scale.items())
    if sys.stdout.isatty():
        os.environ.setdefault("LOG_FORMAT", "text")
    os.environ.setdefault("DEBUG", "false")
    other = running_up()
    if other and other != os.getpid():
        log(
            f"`manage_all.py up` is already running (pid {other}, {UP_PID}): stop it first "
            f"(Ctrl-C in its terminal, or `kill {other}`)"
        )
        return 1
    if UP_PID.exists():
        log(f"removing a stale {UP_PID} left by a run that did not stop cleanly")
    started = time.monotonic()
    try:
        for what, (port, variable) in platform_ports().items():
            servers.check_port_free(port, what=what, variable=variable)
        found, exports = local_servers(STATE, dict(os.environ))
    except servers.ServerError as exc:
        log(str(exc))
        return 1
    UP_PID.write_text(f"{os.getpid()}\n")
    os.environ.update(exports)
    platform = Platform(server_specs(found))

    def _terminate(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    # Ctrl-C too when started in the background of a script (which starts it with SIGINT ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        if found:
            log("local servers: " + ", ".join(f"{s.name} {s.url}" for s in found))
            platform.start()
            platform.wait_healthy(60)
            create_databases(found, exports)
        prepare()
        specs = platform_specs()
        platform.add(specs)
        platform.start()
        platform.wait_healthy()
        gateway = os.environ.get("GATEWAY_SERVICE_URL", "http://localhost:4000")
        analysis = os.environ.get("ANALYSIS_SERVICE_URL", "http://localhost:3001")
        log(f"all {len(platform.specs)} processes up in {time.monotonic() - started:.1f}s")
        alone = [
            s for s in specs if s.service in scale and s.name.rstrip("-0123456789") == s.service
        ]
        if alone:  # the replicas of a scaled web service, each on a port of its own too
            urls = (f"{s.name} {(s.health_url or '').removesuffix('healthz')}" for s in alone)
            log("replicas     " + ", ".join(urls))
        log(f"gateway      {gateway}/api/")
        log(f"API docs     {gateway}/api/docs")
        log(
            f"admin        {analysis}/admin/  (python manage_all.py manage analysis "
            "createsuperuser)"
        )
        log(f"Flower       http://localhost:{os.environ.get('FLOWER_PORT', FLOWER_PORT)}/")
        log(f"data         {STATE} (python manage_all.py reset deletes it)")
        log("Ctrl-C stops everything")
        while True:
            try:
                restarted = platform.restart_dead()
            except RuntimeError as exc:
                log(f"{exc}; stopping the platform")
                return 1
            if restarted:
                log(f"restarted: {', '.join(restarted)}")
            time.sleep(0.5)
    except KeyboardInterrupt:
        log("stopping")
        return 0
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        log(str(exc))
        return 1
    finally:
        platform.stop()
        UP_PID.unlink(missing_ok=True)
        log("stopped")


def cmd_reset(args: argparse.Namespace) -> int:
    """Delete .state/ (every local server's data, keys, secrets) after confirmation."""
    if running_up():
        log("`manage_all.py up` is running: stop it first")
        return 1
    if not STATE.exists():
        log(f"{STATE} does not exist: nothing to delete")
        return 0
    if not args.yes:
        if not sys.stdin.isatty():
            log(f"refusing to delete {STATE} without --yes (no terminal to ask)")
            return 2
        answer = input(f"Delete {STATE} (all local data: databases, keys, secrets)? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            log("nothing deleted")
            return 1
    servers.remove_state(STATE)
    log(f"deleted {STATE}")
    return 0


def cmd_migrate(_: argparse.Namespace) -> int:
    bootstrap()
    load_environment()
    with local_servers_for_command():
        for service in ORM_SERVICES:
            manage(service, "migrate", "--noinput")
    return 0


def cmd_check(_: argparse.Namespace) -> int:
    bootstrap()
    load_environment()
    with local_servers_for_command():
        return 0 if all(ok for _, ok in run_checks()) else 1


def cmd_manage(args: argparse.Namespace) -> int:
    bootstrap()
    load_environment()
    if args.service not in SERVICES:
        log(f"unknown service {args.service!r}; one of {', '.join(SERVICES)}")
        return 2
    with local_servers_for_command():
        return manage(args.service, *args.args, check=False).returncode


def cmd_test(args: argparse.Namespace) -> int:
    bootstrap()
    for var in ("SECRET_KEY", "INTERNAL_SECRET", "DEBUG"):
        os.environ.pop(var, None)
    chosen = args.suites or ["checks", *SUITES]
    unknown = [suite for suite in chosen if suite not in ["checks", *SUITES]]
    if unknown:
        log(f"unknown suite(s) {', '.join(unknown)}; choose from checks, {', '.join(SUITES)}")
        return 2
    return run_suites(chosen, args.pytest_args)


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="set up and run every service")
    up.add_argument(
        "--scale",
        action="append",
        default=[],
        metavar="NAME=N",
        help=f"run N processes of NAME (repeatable; NAME one of {', '.join(SCALABLE)})",
    )
    up.set_defaults(func=cmd_up)
    sub.add_parser("migrate", help="apply every service's migrations").set_defaults(
        func=cmd_migrate
    )
    sub.add_parser("check", help="system checks, missing migrations, lint, types").set_defaults(
        func=cmd_check
    )
    test = sub.add_parser("test", help="run the test suites")
    test.add_argument("suites", nargs="*", help=f"any of: checks {' '.join(SUITES)}")
    test.add_argument(
        "--pytest-args", nargs=argparse.REMAINDER, default=[], help="passed to pytest (put last)"
    )
    test.set_defaults(func=cmd_test)
    reset = sub.add_parser("reset", help="delete .state/ (all local data) after confirmation")
    reset.add_argument("--yes", action="store_true", help="do not ask")
    reset.set_defaults(func=cmd_reset)
    manage_parser = sub.add_parser("manage", help="a Django management command of one service")
    manage_parser.add_argument("service", help=", ".join(SERVICES))
    manage_parser.add_argument("args", nargs=argparse.REMAINDER)
    manage_parser.set_defaults(func=cmd_manage)
    args = parser.parse_args(list(argv) if argv is not None else None)
    return int(args.func(args))
