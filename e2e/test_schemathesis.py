"""Fuzzing the contract: schemathesis against the running gateway's public /api/schema.

Bounded and reproducible: at most MAX_EXAMPLES generated cases per operation in the fuzzing
phase (plus the documented examples and schemathesis' boundary-value "coverage" cases),
deterministic generation (fixed seed), real bearer tokens. Every check runs: no 5xx, status
codes, content types, headers and bodies as documented, invalid input refused, valid input
accepted, unsupported methods answered 405 with Allow... (per-operation exceptions, each with
its reason, in e2e/schemathesis.toml).

The gateway throttles (GATEWAY_USER_RATE per user, GATEWAY_ANON_RATE per client IP): the runs
stay under those rates (--rate-limit) and run side by side, one user each, to stay fast.

Left out of the fuzzing, on purpose:
- POST /api/auth/logout, POST /api/auth/logout-all and DELETE /api/auth/me end the token's
  session (every later case would answer 401); test_auth_flow and test_attacks cover them.
  PATCH /api/auth/me is fuzzed: the fuzzer never knows the current password, so it never
  changes the password (which would end every session too).
- POST /api/auth/register and /api/auth/login are throttled per client IP (10 and 30 a
  minute): fuzzed, they would only exercise the throttle and starve the other e2e tests of
  registrations. Their documented examples are sent once each.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
CONFIG = Path(__file__).with_name("schemathesis.toml")
SEED = 20261127
MAX_EXAMPLES = 25
# Under the gateway's default GATEWAY_USER_RATE (600/min) and GATEWAY_ANON_RATE (120/min).
USER_RATE = "540/m"
ANON_RATE = "60/m"
NOT_FUZZED = ("auth_logout", "auth_logout_all", "auth_me_delete")
THROTTLED = ("auth_register", "auth_login")
PUBLIC = ("auth_refresh", "auth_jwks")


def _ids(option: str, operation_ids: tuple[str, ...]) -> list[str]:
    return [arg for op in operation_ids for arg in (option, op)]


def schemathesis_start(platform, token: str, name: str, *options: str) -> subprocess.Popen:
    """Start one schemathesis run (output and JUnit report under artifacts/e2e/schemathesis)."""
    reports = ROOT / "artifacts" / "e2e" / "schemathesis" / Path(platform.env["STATE_DIR"]).name
    reports.mkdir(parents=True, exist_ok=True)
    argv = [
        str(Path(sys.executable).parent / "schemathesis"),
        "--config-file",
        str(CONFIG),
        "run",
        f"{platform.gateway}/api/schema?format=json",
        "--checks",
        "all",
        "--seed",
        str(SEED),
        "--generation-deterministic",
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--header",
        f"Authorization: Bearer {token}",
        "--report",
        "junit",
        "--report-junit-path",
        str(reports / f"{name}.xml"),
        "--output-truncate",
        "false",
        *options,
    ]
    log = open(reports / f"{name}.log", "w")  # noqa: SIM115 - closed by schemathesis_wait
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, text=True)
    proc.log = log  # type: ignore[attr-defined]
    return proc


def schemathesis_wait(proc: subprocess.Popen) -> tuple[int, str]:
    try:
        code = proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.log.close()  # type: ignore[attr-defined]
    return code, Path(proc.log.name).read_text()  # type: ignore[attr-defined]


def register(platform, api) -> dict[str, str]:
    response = api.post(
        f"{platform.gateway}/api/auth/register",
        json={"username": f"fuzz_{uuid.uuid4().hex[:10]}", "password": "fuzzing the contract 42"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return {"token": response.json()["token"]}


def test_schema_is_served_and_complete(platform, api):
    schema = api.get(f"{platform.gateway}/api/schema?format=json", timeout=10).json()
    assert {state["status"] for state in schema["x-upstreams"].values()} == {"ok"}
    operations = {
        operation["operationId"]
        for item in schema["paths"].values()
        for operation in item.values()
        if isinstance(operation, dict) and "operationId" in operation
    }
    assert {*NOT_FUZZED, *THROTTLED, *PUBLIC} <= operations


def test_fuzz_the_contract(platform, api, user):
    bounded = ["--max-examples", str(MAX_EXAMPLES)]
    other_user = register(platform, api)
    runs = {
        # The playlist service's operations, as `user`.
        "playlists": schemathesis_start(
            platform,
            user["token"],
            "playlists",
            *bounded,
            "--phases",
            "examples,coverage,fuzzing",
            "--rate-limit",
            USER_RATE,
            "--include-tag",
            "playlists",
        ),
        # The other protected operations, as a second user.
        "auth-analysis": schemathesis_start(
            platform,
            other_user["token"],
            "auth-analysis",
            *bounded,
            "--phases",
            "examples,coverage,fuzzing",
            "--rate-limit",
            USER_RATE,
            "--include-tag-regex",
            "^(auth|analysis)$",
            *_ids("--exclude-operation-id", (*NOT_FUZZED, *THROTTLED, *PUBLIC)),
        ),
        # Public operations share the anonymous per-IP budget with every other client: fewer.
        "public": schemathesis_start(
            platform,
            user["token"],
            "public",
            "--max-examples",
            "10",
            "--phases",
            "examples,fuzzing",
            "--rate-limit",
            ANON_RATE,
            *_ids("--include-operation-id", PUBLIC),
        ),
        # Throttled per IP: only their documented examples, once.
        "examples": schemathesis_start(
            platform,
            user["token"],
            "examples",
            "--phases",
            "examples",
            "--mode",
            "positive",
            *_ids("--include-operation-id", THROTTLED),
        ),
    }
    results = {name: schemathesis_wait(proc) for name, proc in runs.items()}
    failed = {name: output for name, (code, output) in results.items() if code != 0}
    assert not failed, "\n\n".join(f"=== {name}\n{out[-15000:]}" for name, out in failed.items())
    # Nothing above ended the session of either token.
    for token in (user["token"], other_user["token"]):
        me = requests.get(
            f"{platform.gateway}/api/auth/me",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert me.status_code == 200, me.text
