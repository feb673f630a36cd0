"""The launcher's own logic (devtools/): the process table, the env file, the test summary."""

import shutil
import tempfile
from pathlib import Path

import pytest

from devtools import servers
from devtools.env import read_env_file
from devtools.localservers import local_servers
from devtools.platform import platform_specs
from devtools.project import ROOT
from devtools.testing import junit_counts


def names(overrides=None):
    return [spec.name for spec in platform_specs(overrides)]


def test_one_process_table_in_every_mode():
    """Local servers or not, the same programs run: no layout exists for one mode only."""
    expected = [
        "gateway",
        "analysis",
        "auth",
        "playlist",
        "analysis-worker",
        "playlist-worker",
        "auth-relay",
        "playlist-relay",
        "flower",
    ]
    assert names({"MONGODB_URI": ""}) == expected
    assert names({"MONGODB_URI": "mongodb://db/x"}) == expected
    playlist = next(s for s in platform_specs({}) if s.name == "playlist")
    assert playlist.argv[playlist.argv.index("--workers") + 1] == "2"


@pytest.fixture
def server_state():
    """A state folder outside pytest's own: as root, PostgreSQL runs as another user, which needs
    every parent traversable, and every pytest session starting meanwhile (another suite, a
    second run) makes /tmp/pytest-of-root private again, under a running initdb."""
    folder = Path(tempfile.mkdtemp(prefix="ms-launcher-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_local_servers_fill_in_what_no_variable_names(server_state):
    tmp_path = server_state
    found, exports = local_servers(
        tmp_path, {"REDIS_URL": "redis://r:6379/0"}, durable=False, free_ports=True
    )
    assert [s.name for s in found] == ["postgres", "mongodb"]
    assert exports["CELERY_BROKER_URL"] == "redis://r:6379/1"  # the broker beside the cache
    assert exports["AUTH_DATABASE_URL"].endswith("/auth")
    assert exports["ANALYSIS_DATABASE_URL"].endswith("/analysis")
    assert exports["MONGODB_URI"].startswith("mongodb://127.0.0.1:")
    assert (tmp_path / "postgres" / "PG_VERSION").read_text().strip() == "16"  # initdb ran
    named = {
        "AUTH_DATABASE_URL": "postgres://a/auth",
        "ANALYSIS_DATABASE_URL": "postgres://a/an",
        "REDIS_URL": "redis://r/0",
        "CELERY_BROKER_URL": "amqp://b//",
        "MONGODB_URI": "mongodb://m",
    }
    assert local_servers(tmp_path, named) == ([], {})


def test_a_data_directory_of_another_postgres_version_is_refused_and_kept(tmp_path):
    data = tmp_path / "postgres"
    data.mkdir()
    (data / "PG_VERSION").write_text("13\n")
    (data / "base").mkdir()
    try:
        servers.postgres(tmp_path, FAKE_BINARIES, port=1)
    except servers.ServerError as exc:
        assert str(data) in str(exc)
        assert "PostgreSQL 13" in str(exc)
        assert "reset" in str(exc)
    else:
        raise AssertionError("a cluster of PostgreSQL 13 was accepted by PostgreSQL 16")
    assert (data / "base").exists()  # nothing deleted


def test_a_taken_port_names_the_port_and_the_variable():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        try:
            servers.check_port_free(port, what="the gateway", variable="GATEWAY_PORT")
        except servers.ServerError as exc:
            assert f"port {port}" in str(exc)
            assert "GATEWAY_PORT" in str(exc)
        else:
            raise AssertionError("a port in use was reported free")


FAKE_BINARIES = servers.Binaries(
    pg_bin=ROOT / "nonexistent",
    pg_major="16",
    redis_server=ROOT,
    secantusd=ROOT,
)


def test_ports_and_databases_reach_the_right_process():
    specs = {
        s.name: s
        for s in platform_specs(
            {
                "GATEWAY_PORT": "4100",
                "AUTH_PORT": "4102",
                "AUTH_DATABASE_URL": "postgres://a/auth",
                "ANALYSIS_DATABASE_URL": "postgres://a/an",
            }
        )
    }
    assert "127.0.0.1:4100" in specs["gateway"].argv
    assert specs["gateway"].env["AUTH_SERVICE_URL"] == "http://127.0.0.1:4102"
    assert specs["auth"].env["DATABASE_URL"] == "postgres://a/auth"
    assert specs["analysis-worker"].env["DATABASE_URL"] == "postgres://a/an"
    assert "DATABASE_URL" not in specs["gateway"].env
    dirs = {s.env["PROMETHEUS_MULTIPROC_DIR"] for s in specs.values()}
    assert len(dirs) == len(specs)  # one metrics folder per program


def test_env_file_parsing(tmp_path):
    path = tmp_path / ".env"
    path.write_text("# comment\n\nexport A=1\nB='two words'\nC=\"x=y\"\nEMPTY=\nnoequals\n")
    assert read_env_file(path) == {"A": "1", "B": "two words", "C": "x=y"}


def test_junit_counts(tmp_path):
    report = tmp_path / "r.xml"
    report.write_text(
        '<testsuites><testsuite tests="7" failures="1" errors="1" skipped="2"/></testsuites>'
    )
    assert junit_counts(report) == (3, 2, 2)
