"""Helpers of test_k8s.py: the overlays rendered, the containers' environment resolved, and the
tools virtualenv (checkov, kubernetes-validate) created from requirements/k8s-tools.txt.

The tools live in a virtualenv of their own: checkov pins many packages the services pin
differently. It is kept in the user's cache folder (``~/.cache/musicstream/k8s-tools``, like
pip's cache), so fresh clones on one machine (CI) install it once, and (re)created when missing
or when the requirements file (or the Python version) changes: a hash of both is stamped inside it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "infra" / "k8s"
OVERLAYS = ("dev", "prod")
TOOLS_REQUIREMENTS = REPO / "requirements" / "k8s-tools.txt"
TOOLS_VENV = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "musicstream" / "k8s-tools"
)
# Custom resources no Kubernetes schema knows (KEDA's); test_k8s.py checks them itself.
CUSTOM_KINDS = {"ScaledObject", "TriggerAuthentication"}
WORKLOAD_KINDS = {"Deployment", "Job"}


class ToolsUnavailable(RuntimeError):
    """The tools virtualenv could not be created (no network, no index)."""


def tools_digest(requirements: Path = TOOLS_REQUIREMENTS) -> str:
    digest = hashlib.sha256(requirements.read_bytes())
    digest.update(sys.version.encode())
    return digest.hexdigest()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One creator at a time (two test runs may start together)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_tools(
    venv: Path = TOOLS_VENV, requirements: Path = TOOLS_REQUIREMENTS
) -> tuple[Path, float]:
    """The tools' bin folder, and the seconds spent installing (0 when already there)."""
    stamp = venv / ".requirements.sha256"
    digest = tools_digest(requirements)
    with _locked(venv.parent / f"{venv.name}.lock"):
        if stamp.exists() and stamp.read_text() == digest:
            return venv / "bin", 0.0
        started = time.monotonic()
        shutil.rmtree(venv, ignore_errors=True)
        steps = [
            [sys.executable, "-m", "venv", str(venv)],
            [
                str(venv / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-deps",  # every package is pinned in the file: no resolver run
                "-r",
                str(requirements),
            ],
            [str(venv / "bin" / "checkov"), "--version"],  # the pins are complete
            [str(venv / "bin" / "kubernetes-validate"), "--version"],
        ]
        for argv in steps:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
            if done.returncode != 0:
                shutil.rmtree(venv, ignore_errors=True)
                raise ToolsUnavailable(
                    f"{' '.join(argv[:4])} ... failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
                )
        stamp.write_text(digest)
        return venv / "bin", time.monotonic() - started


# ------------------------------------------------------------------ rendered objects


def render(kubectl: str, overlay: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [kubectl, "kustomize", str(K8S / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def parse(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] == kind}


def workloads(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] in WORKLOAD_KINDS}


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def containers(workload: dict[str, Any], *, init: bool = True) -> list[dict[str, Any]]:
    spec = pod_spec(workload)
    found = list(spec.get("containers", []))
    if init:
        found += list(spec.get("initContainers", []))
    return found


def image_parts(image: str) -> tuple[str, str]:
    """(repository without the registry host, tag) of ``[registry/]musicstream/x:tag``."""
    name, _, tag = image.rpartition(":")
    parts = name.split("/")
    return "/".join(parts[-2:]), tag


def service_of(container: dict[str, Any]) -> str:
    """The platform service whose image the container runs (musicstream/<service>)."""
    repository, _ = image_parts(container["image"])
    return repository.split("/")[1]


# ------------------------------------------------------------------ environment


def dockerfile_env() -> dict[str, str]:
    """The ENV of infra/Dockerfile's runtime stage, for SERVICE=${SERVICE} (left as written)."""
    text = (REPO / "infra" / "Dockerfile").read_text()
    runtime = text.split(" AS runtime", 1)[1]
    block = runtime.split("\nENV ", 1)[1].split("\n\n", 1)[0]
    env = {}
    for part in block.replace("\\\n", " ").split():
        if "=" in part:
            key, value = part.split("=", 1)
            env[key] = value
    return env


def env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key] = value
    return values


def secret_values(overlay: str, objects: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """Secret name -> its keys and (example) values, as the overlay's pods will see them.

    dev generates its Secret (kustomize, hashed name); prod's are made out of band, from the
    keys listed in prod/secrets.env.example (and the JWT key file).
    """
    import base64

    found: dict[str, dict[str, str]] = {}
    for name, secret in by_kind(objects, "Secret").items():
        found[name] = {
            key: base64.b64decode(value).decode() for key, value in secret.get("data", {}).items()
        }
    if overlay == "prod":
        found["musicstream-secrets"] = env_file(K8S / "prod" / "secrets.env.example")
        found["musicstream-jwt"] = {"private.pem": "(the PEM file)"}
    return found


def container_env(
    container: dict[str, Any],
    config_maps: dict[str, dict[str, Any]],
    secrets: dict[str, dict[str, str]],
) -> tuple[dict[str, str], list[str]]:
    """The variables the container gets from the manifest (image ENV aside), and problems."""
    env: dict[str, str] = {}
    problems: list[str] = []
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef") or {}
        if ref.get("name") not in config_maps:
            problems.append(f"envFrom: no ConfigMap {ref.get('name')}")
            continue
        env.update(config_maps[ref["name"]].get("data", {}))
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
            continue
        ref = item.get("valueFrom", {}).get("secretKeyRef") or {}
        if ref.get("name") not in secrets or ref.get("key") not in secrets[ref["name"]]:
            problems.append(f"{item['name']}: no key {ref.get('key')} in Secret {ref.get('name')}")
            continue
        env[item["name"]] = secrets[ref["name"]][ref["key"]] or "x" * 50
    return env, problems
