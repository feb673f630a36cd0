"""The test runs: real servers sliced for one run, one pytest per suite, one summary line.

``python3 manage_all.py test [SUITE...]`` runs each suite in its own pytest process with the
environment its service runs with (``suite_command``), on isolated slices of real servers
(``TestResources``), reads each suite's JUnit report (``junit_counts``) and ends with
"N passed, N failed". The ``checks`` suite is ``run_checks``: what ``manage_all.py check`` runs.

Standard library only (see devtools/project.py).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from devtools import servers
from devtools.env import service_env
from devtools.localservers import local_servers, redis_db_url, server_specs
from devtools.platform import manage
from devtools.project import ORM_SERVICES, ROOT, SERVICES, STATE, log, venv_bin, venv_python
from devtools.supervisor import Platform

SUITES = ["common", "auth", "gateway", "playlist", "analysis", "infra", "e2e"]


def run_checks(overrides: dict[str, str] | None = None) -> list[tuple[str, bool]]:
    """System checks of every service, missing migrations, lint and types."""
    results: list[tuple[str, bool]] = []
    for service in SERVICES:
        env = service_env(service, overrides)
        ok = manage(service, "check", "--fail-level", "WARNING", env=env, check=False).returncode
        results.append((f"{service}: manage.py check", ok == 0))
    for service in ORM_SERVICES:
        env = service_env(service, overrides)
        argv = ("makemigrations", "--check", "--dry-run")
        ok = manage(service, *argv, env=env, check=False).returncode == 0
        results.append((f"{service}: makemigrations --check", ok))
    ruff = subprocess.run([venv_bin("ruff"), "check", "."], cwd=ROOT, check=False)
    results.append(("ruff check", ruff.returncode == 0))
    mypy = subprocess.run(
        [venv_bin("mypy")], cwd=ROOT, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    results.append(("mypy common", mypy.returncode == 0))
    for name, ok in results:
        log(f"{'ok  ' if ok else 'FAIL'} {name}")
    return results


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


@dataclass
class TestResources:
    """Isolated slices of real servers for one test run; removed afterwards.

    PostgreSQL and Redis: the machine's on 127.0.0.1 when they answer (CI), else local ones
    from the virtualenv's wheels, started for this run. MongoDB: always this run's own
    SecantusDB server (a real MongoDB can be named for the contract suite). RabbitMQ: the
    machine's, in a vhost of this run; without it the tests that need RabbitMQ itself skip
    (fail under CI=true) and the platform's broker is Redis.
    """

    run_id: str
    env: dict[str, str]
    vhost: str | None = None
    platform: Platform | None = None
    state: Path | None = None

    @classmethod
    def create(cls, state: Path) -> TestResources:
        run_id = uuid.uuid4().hex[:8]
        ci = os.environ.get("CI", "").lower() == "true"
        contract_mongo = os.environ.get("MONGODB_URI_CONTRACT") or os.environ.get("MONGODB_URI")
        env = {
            "DEBUG": "false",
            "SECRET_KEY": f"test-secret-{run_id}",
            "INTERNAL_SECRET": f"test-internal-{run_id}",
            "LOG_FORMAT": "text",
            "TEST_RUN_ID": run_id,
            "CACHE_KEY_PREFIX": f"mstest-{run_id}",
        }
        if contract_mongo:
            env["MONGODB_URI_CONTRACT"] = contract_mongo
        for var in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "MONGODB_URI"):
            os.environ.pop(var, None)
        resources = cls(run_id=run_id, env=env, state=state)
        # A fresh machine with nothing but Python, on any machine: ignore the servers it has.
        own = os.environ.get("TEST_LOCAL_SERVERS", "").lower() == "true"
        local_env: dict[str, str] = {}
        pg = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
        redis = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
        if not own and (os.environ.get("TEST_POSTGRES_URL") or _port_open("127.0.0.1", 5432)):
            env["TEST_POSTGRES_URL"] = pg
            local_env["AUTH_DATABASE_URL"] = local_env["ANALYSIS_DATABASE_URL"] = pg
        if not own and (os.environ.get("TEST_REDIS_URL") or _port_open("127.0.0.1", 6379)):
            env["TEST_REDIS_URL"] = redis
            local_env["REDIS_URL"] = redis
        if os.environ.get("TEST_MONGODB_URI"):
            local_env["MONGODB_URI"] = os.environ["TEST_MONGODB_URI"]
        local_env["CELERY_BROKER_URL"] = "unused"  # decided below
        found, exports = local_servers(state / "servers", local_env, durable=False, free_ports=True)
        if found:
            log("starting this run's own servers: " + ", ".join(s.name for s in found))
            resources.platform = Platform(server_specs(found), echo=False, log_dir=state / "logs")
            resources.platform.start()
            resources.platform.wait_healthy(90)
        if "AUTH_DATABASE_URL" in exports:
            env["TEST_POSTGRES_URL"] = exports["AUTH_DATABASE_URL"].rsplit("/", 1)[0] + "/postgres"
        if "REDIS_URL" in exports:
            env["TEST_REDIS_URL"] = exports["REDIS_URL"]
        env["TEST_MONGODB_URI"] = exports.get("MONGODB_URI") or os.environ["TEST_MONGODB_URI"]
        if not own and _port_open("127.0.0.1", 5672) and shutil.which("rabbitmqctl"):
            vhost = f"mstest-{run_id}"
            for argv in (
                ["rabbitmqctl", "-q", "add_vhost", vhost],
                ["rabbitmqctl", "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
            ):
                subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
            resources.vhost = vhost
            env["TEST_AMQP_URL"] = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
            env["TEST_BROKER_URL"] = env["TEST_AMQP_URL"]
        else:
            message = "no RabbitMQ (127.0.0.1:5672 and rabbitmqctl)"
            if ci:
                log(f"CI=true and {message}: the tests that need it will fail")
            else:
                log(f"{message}: the tests that need it are skipped; the broker is Redis")
            # Celery's Redis transport, keys under this run's prefix (kombu global_keyprefix).
            env["TEST_BROKER_URL"] = redis_db_url(env["TEST_REDIS_URL"], 1)
            env["CELERY_BROKER_KEY_PREFIX"] = f"mstest-{run_id}-broker:"
        env["TEST_REQUIRE_SERVERS"] = "true" if ci else "false"
        return resources

    def cleanup(self) -> None:
        if self.vhost and shutil.which("rabbitmqctl"):
            subprocess.run(
                ["rabbitmqctl", "-q", "delete_vhost", self.vhost],
                check=False,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        if self.platform is None or "redis" not in self.platform.procs:
            prefix = self.env["CACHE_KEY_PREFIX"]
            code = (
                "import redis,sys;r=redis.Redis.from_url(sys.argv[1]);"
                "[r.delete(k) for k in r.scan_iter(sys.argv[2]+'*', count=1000)]"
            )
            for url in {self.env["TEST_REDIS_URL"], self.env["TEST_BROKER_URL"]}:
                if url.startswith("redis"):
                    subprocess.run([venv_python(), "-c", code, url, prefix], check=False)
        if self.platform is not None:
            self.platform.stop()
        if self.state is not None:
            shutil.rmtree(self.state / "servers", ignore_errors=True)


def suite_command(
    suite: str, junit: Path, extra: Sequence[str]
) -> tuple[list[str], Path, dict[str, str]]:
    """The pytest command of one suite, with the environment its service runs with."""
    base = [
        venv_python(),
        "-m",
        "pytest",
        "-c",
        str(ROOT / "pytest.ini"),
        "-p",
        "no:cacheprovider",
        f"--junitxml={junit}",
    ]
    run = os.environ["TEST_RUN_ID"]
    servers_env = {
        "REDIS_URL": os.environ["TEST_REDIS_URL"],
        "CELERY_BROKER_URL": os.environ["TEST_BROKER_URL"],
        "MONGODB_URI": os.environ["TEST_MONGODB_URI"],
    }
    if suite in SERVICES:
        folder, _ = SERVICES[suite]
        env = service_env(suite, servers_env)
        env["MONGODB_DB"] = f"playlist_test_{run}"
        if suite in ORM_SERVICES:
            # pytest-django creates (and drops) test_<name>: a database of this run only.
            pg = os.environ["TEST_POSTGRES_URL"]
            env["DATABASE_URL"] = f"{pg.rsplit('/', 1)[0]}/ms_{suite}_{run}"
        return (
            [*base, "--rootdir", str(ROOT / folder), str(ROOT / folder), *extra],
            ROOT / folder,
            env,
        )
    env = dict(os.environ)  # these suites read the TEST_* variables
    env["PYTHONPATH"] = str(ROOT)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    folder = ROOT / suite / "tests" if suite == "infra" else ROOT / suite
    return [*base, "--rootdir", str(folder), str(folder), *extra], ROOT, env


def junit_counts(path: Path) -> tuple[int, int, int]:
    """(passed, failed, skipped) from a JUnit XML report."""
    root = ET.parse(path).getroot()  # noqa: S314 - our own pytest's report
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    total = failed = skipped = 0
    for suite in suites:
        total += int(suite.get("tests", 0))
        failed += int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        skipped += int(suite.get("skipped", 0))
    return total - failed - skipped, failed, skipped


def run_suites(chosen: Sequence[str], pytest_args: Sequence[str]) -> int:
    """Run the chosen suites on this run's servers; print one line per suite and the total."""
    run_state = STATE / "test" / uuid.uuid4().hex[:8]
    run_state.mkdir(parents=True, exist_ok=True)
    try:
        resources = TestResources.create(run_state)
    except (servers.ServerError, RuntimeError) as exc:
        log(f"could not start this run's servers: {exc}")
        return 1
    os.environ.update(resources.env)
    os.environ["STATE_DIR"] = str(run_state)
    # What the checks (manage.py check, makemigrations --check) configure the services with.
    checks_env = dict(
        {
            "REDIS_URL": resources.env["TEST_REDIS_URL"],
            "CELERY_BROKER_URL": resources.env["TEST_BROKER_URL"],
            "MONGODB_URI": resources.env["TEST_MONGODB_URI"],
            "MONGODB_DB": f"playlist_test_{resources.run_id}",
            "AUTH_DATABASE_URL": resources.env["TEST_POSTGRES_URL"],
            "ANALYSIS_DATABASE_URL": resources.env["TEST_POSTGRES_URL"],
        }
    )
    results_dir = STATE / "test-results"
    results_dir.mkdir(parents=True, exist_ok=True)
    totals = {"passed": 0, "failed": 0, "skipped": 0}
    lines: list[str] = []
    try:
        for suite in chosen:
            if suite == "checks":
                checks = run_checks(checks_env)
                passed = sum(ok for _, ok in checks)
                counts = (passed, len(checks) - passed, 0)
            else:
                junit = results_dir / f"{suite}.xml"
                junit.unlink(missing_ok=True)
                argv, cwd, env = suite_command(suite, junit, pytest_args)
                log(f"suite {suite}: {' '.join(argv[1:4])} ... {argv[-1 - len(pytest_args)]}")
                code = subprocess.run(argv, cwd=cwd, env=env, check=False).returncode
                if junit.exists():
                    counts = junit_counts(junit)
                    if code not in (0, 5) and counts[1] == 0:
                        counts = (counts[0], 1, counts[2])  # e.g. an error at collection
                else:
                    counts = (0, 0 if code in (0, 5) else 1, 0)
            for key, value in zip(("passed", "failed", "skipped"), counts, strict=True):
                totals[key] += value
            lines.append(f"{suite}: {counts[0]} passed, {counts[1]} failed, {counts[2]} skipped")
    finally:
        resources.cleanup()
        shutil.rmtree(run_state, ignore_errors=True)
    for line in lines:
        log(line)
    summary = f"{totals['passed']} passed, {totals['failed']} failed"
    if totals["skipped"]:
        summary += f", {totals['skipped']} skipped"
    print(summary, flush=True)
    return 1 if totals["failed"] else 0
