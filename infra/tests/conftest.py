"""Fixtures of the infra suite: the deployment files, parsed, and the tools that check them.

Run with `python manage_all.py test infra` (PYTHONPATH is the repository root; no Django).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

INFRA = Path(__file__).resolve().parents[1]
REPO = INFRA.parent
APP_SERVICES = ("gateway", "auth", "playlist", "analysis")


def ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def need_tool(name: str, hint: str) -> str:
    """The tool's path; without it the test is skipped, or fails under CI=true."""
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} is not installed ({hint})"
    if ci():
        pytest.fail(f"CI=true and {message}")
    pytest.skip(message)


@pytest.fixture(scope="session")
def infra() -> Path:
    return INFRA


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def compose_text() -> str:
    return (INFRA / "docker-compose.yml").read_text()


@pytest.fixture(scope="session")
def compose(compose_text: str) -> dict[str, Any]:
    return yaml.safe_load(compose_text)


@pytest.fixture(scope="session")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def app_service_of(spec: dict[str, Any]) -> str | None:
    """The SERVICE build argument of a Compose service built from infra/Dockerfile."""
    build = spec.get("build")
    if isinstance(build, dict) and build.get("dockerfile") == "infra/Dockerfile":
        return str(build["args"]["SERVICE"])
    return None


@pytest.fixture(scope="session")
def app_services(services: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Compose service name -> the platform service whose image it runs."""
    return {
        name: svc for name, spec in services.items() if (svc := app_service_of(spec)) is not None
    }


@pytest.fixture(scope="session")
def promtool() -> str:
    return need_tool("promtool", "apt-get install prometheus; .ci/run installs it")


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, **kwargs)


_ENV_LINE = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$")


def env_sample_entries() -> dict[str, tuple[str, bool]]:
    """.env-sample: name -> (sample value, set (uncommented)?)."""
    entries: dict[str, tuple[str, bool]] = {}
    for line in (INFRA / ".env-sample").read_text().splitlines():
        match = _ENV_LINE.match(line.strip())
        if match:
            entries[match.group(1)] = (match.group(2), not line.startswith("#"))
    return entries
