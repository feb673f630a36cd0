"""manage_all.py's own logic: the process table, the env file, the test summary."""

import manage_all


def names(overrides=None):
    return [spec.name for spec in manage_all.platform_specs(overrides)]


def test_single_machine_table_keeps_playlist_work_in_its_web_process():
    assert names({"MONGODB_URI": ""}) == [
        "gateway",
        "analysis",
        "auth",
        "playlist",
        "analysis-worker",
        "auth-relay",
        "flower",
    ]
    playlist = next(
        s for s in manage_all.platform_specs({"MONGODB_URI": ""}) if s.name == "playlist"
    )
    assert playlist.argv[playlist.argv.index("--workers") + 1] == "1"


def test_real_mongodb_adds_the_playlist_worker_and_relay():
    assert {"playlist-worker", "playlist-relay"} <= set(names({"MONGODB_URI": "mongodb://db/x"}))


def test_ports_and_databases_reach_the_right_process():
    specs = {
        s.name: s
        for s in manage_all.platform_specs(
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
    assert manage_all.read_env_file(path) == {"A": "1", "B": "two words", "C": "x=y"}


def test_junit_counts(tmp_path):
    report = tmp_path / "r.xml"
    report.write_text(
        '<testsuites><testsuite tests="7" failures="1" errors="1" skipped="2"/></testsuites>'
    )
    assert manage_all.junit_counts(report) == (3, 2, 2)
