"""The Postman collection at the repo root, run by newman against the running platform.

``postman_collection.json`` covers every public endpoint with a test script per request; any
failed assertion (or request error) fails this test. newman comes from ``e2e/node_modules``
(``npm ci`` from the pinned package-lock.json, run here when the folder is missing).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from common.testing import servers_required

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
E2E = ROOT / "e2e"
NEWMAN = E2E / "node_modules" / ".bin" / "newman"
COLLECTION = ROOT / "postman_collection.json"
ENVIRONMENT = ROOT / "postman_environment.json"
REPORT = ROOT / "artifacts" / "e2e" / "newman-report.json"


def _require(condition: bool, message: str) -> None:
    if condition:
        return
    if servers_required():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def newman() -> Path:
    _require(bool(shutil.which("node")), "node is missing (apt-get install -y nodejs npm)")
    if not NEWMAN.exists():
        npm = shutil.which("npm")
        _require(bool(npm), "npm is missing (apt-get install -y npm)")
        done = subprocess.run(
            [str(npm), "ci", "--no-audit", "--no-fund"],
            cwd=E2E,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert NEWMAN.exists()
    return NEWMAN


def test_collection_is_v21_and_covers_every_public_endpoint():
    collection = json.loads(COLLECTION.read_text())
    assert collection["info"]["schema"].endswith("/v2.1.0/collection.json")
    requests = [item for folder in collection["item"] for item in folder["item"]]
    seen = {(r["request"]["method"], r["request"]["url"]["raw"].split("?")[0]) for r in requests}
    expected = {
        ("GET", "{{baseUrl}}/healthz"),
        ("GET", "{{baseUrl}}/readyz"),
        ("GET", "{{baseUrl}}/metrics"),
        ("GET", "{{baseUrl}}/api/schema"),
        ("GET", "{{baseUrl}}/api/docs"),
        ("GET", "{{baseUrl}}/api/redoc"),
        ("GET", "{{baseUrl}}/api/auth/.well-known/jwks.json"),
        ("POST", "{{baseUrl}}/api/auth/register"),
        ("POST", "{{baseUrl}}/api/auth/login"),
        ("POST", "{{baseUrl}}/api/auth/refresh"),
        ("POST", "{{baseUrl}}/api/auth/logout"),
        ("GET", "{{baseUrl}}/api/auth/me"),
        ("PATCH", "{{baseUrl}}/api/auth/me"),
        ("DELETE", "{{baseUrl}}/api/auth/me"),
        ("GET", "{{baseUrl}}/api/playlists"),
        ("POST", "{{baseUrl}}/api/playlists"),
        ("GET", "{{baseUrl}}/api/playlists/{{playlistId}}"),
        ("PUT", "{{baseUrl}}/api/playlists/{{playlistId}}"),
        ("PATCH", "{{baseUrl}}/api/playlists/{{playlistId}}"),
        ("DELETE", "{{baseUrl}}/api/playlists/{{playlistId}}"),
        ("POST", "{{baseUrl}}/api/playlists/{{playlistId}}/plays"),
        ("GET", "{{baseUrl}}/api/analysis"),
        ("GET", "{{baseUrl}}/api/analysis/genres"),
    }
    assert expected <= seen, expected - seen
    for item in requests:
        scripts = [e for e in item["event"] if e["listen"] == "test"]
        assert scripts and any("pm.test(" in line for line in scripts[0]["script"]["exec"]), item
    environment = json.loads(ENVIRONMENT.read_text())
    assert {"key": "baseUrl", "value": "http://localhost:4000"}.items() <= environment["values"][
        0
    ].items()


def test_newman_runs_the_collection_without_a_failure(platform, newman):
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.unlink(missing_ok=True)
    done = subprocess.run(
        [
            str(newman),
            "run",
            str(COLLECTION),
            "--environment",
            str(ENVIRONMENT),
            "--env-var",
            f"baseUrl={platform.gateway}",
            "--reporters",
            "cli,json",
            "--reporter-json-export",
            str(REPORT),
            "--timeout-request",
            "15000",
            "--color",
            "off",
            "--disable-unicode",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    output = done.stdout[-6000:] + done.stderr[-2000:]
    assert REPORT.exists(), f"newman wrote no report (exit {done.returncode}):\n{output}"
    report = json.loads(REPORT.read_text())
    run = report["run"]
    failures = [
        f"{f['source'].get('name', '?')}: {f['error'].get('test', '')} {f['error']['message']}"
        for f in run["failures"]
    ]
    assert not failures, "\n".join(failures) + "\n" + output
    assert done.returncode == 0, output
    stats = run["stats"]
    assert stats["requests"]["total"] >= 30 and stats["requests"]["failed"] == 0
    assert stats["assertions"]["total"] >= 60 and stats["assertions"]["failed"] == 0
