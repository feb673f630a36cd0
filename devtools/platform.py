"""The platform's process table: which programs run, with which arguments, environment, ports.

The same table in every mode (``up``, the end-to-end suite, the benchmarks; Compose runs the
same programs): four gunicorn servers, two Celery workers, two outbox relays, Flower. What
changes between a laptop and Compose is only where the servers are (devtools/localservers.py).
``devtools.supervisor`` runs the table; ``prepare`` is what must happen before it starts.

Standard library only (see devtools/project.py).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from devtools import servers
from devtools.env import service_env
from devtools.project import (
    FLOWER_PORT,
    ORM_SERVICES,
    ROOT,
    SERVICES,
    STATE,
    venv_bin,
    venv_python,
)
from devtools.supervisor import ProcSpec

# What `up --scale NAME=N` (or LAUNCHER_SCALE) may run several of. Not the outbox relays (one
# publisher per outbox here) nor Flower (one dashboard).
SCALABLE = (*SERVICES, "analysis-worker", "playlist-worker")


def manage(
    service: str, *args: str, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[bytes]:
    folder, _ = SERVICES[service]
    return subprocess.run(
        [venv_python(), str(ROOT / folder / "manage.py"), *args],
        cwd=ROOT / folder,
        env=env or service_env(service),
        check=check,
    )


def prepare(env_overrides: dict[str, str] | None = None) -> None:
    """Migrations and the auth key pair: everything `up` needs before starting processes."""
    for service in ORM_SERVICES:
        manage(service, "migrate", "--noinput", "-v", "0", env=service_env(service, env_overrides))
    manage("auth", "ensure_jwt_keys", env=service_env("auth", env_overrides))


def gunicorn_argv(service: str, port: int, env: dict[str, str]) -> list[str]:
    folder, _ = SERVICES[service]
    workers = env.get(f"{service.upper()}_WEB_CONCURRENCY") or env.get("WEB_CONCURRENCY", "2")
    return [
        venv_bin("gunicorn"),
        "-c",
        str(ROOT / "common" / "gunicorn_conf.py"),
        f"{folder}.wsgi:application",
        "--bind",
        f"{env.get('BIND_HOST', '127.0.0.1')}:{port}",
        "--workers",
        workers,
        "--chdir",
        str(ROOT / folder),
    ]


def platform_specs(overrides: dict[str, str] | None = None) -> list[ProcSpec]:
    """Every process `up` runs, given the environment (ports may be overridden).

    The same table in every mode: what changes between a laptop and Compose is only where
    the servers are, never which processes run.
    """
    specs: list[ProcSpec] = []
    base = dict(os.environ)
    base.update(overrides or {})
    for service, (_folder, default_port) in SERVICES.items():
        port = int(base.get(f"{service.upper()}_PORT", default_port))
        env = service_env(service, overrides)
        specs.append(
            ProcSpec(
                service,
                service,
                gunicorn_argv(service, port, env),
                f"http://127.0.0.1:{port}/healthz",
                env=env,
            )
        )
    for service, folder, queue in (
        ("analysis", "analysis_project", "analysis.events"),
        ("playlist", "playlist_project", "playlist.events"),
    ):
        specs.append(
            ProcSpec(
                f"{service}-worker",
                service,
                [
                    venv_bin("celery"),
                    "-A",
                    folder,
                    "worker",
                    "-Q",
                    queue,
                    "-n",
                    f"{service}@%h",
                    "--loglevel",
                    base.get("LOG_LEVEL", "INFO"),
                    "-E",
                    "--concurrency",
                    base.get(f"{service.upper()}_WORKER_CONCURRENCY", "2"),
                ],
                env=service_env(service, overrides),
            )
        )
    for service in ("auth", "playlist"):
        folder, _ = SERVICES[service]
        specs.append(
            ProcSpec(
                f"{service}-relay",
                service,
                [venv_python(), str(ROOT / folder / "manage.py"), "outbox_relay"],
                env=service_env(service, overrides),
            )
        )
    flower_port = int(base.get("FLOWER_PORT", FLOWER_PORT))
    specs.append(
        ProcSpec(
            "flower",
            "analysis",
            [
                venv_bin("celery"),
                "-A",
                "analysis_project",
                "flower",
                f"--port={flower_port}",
                f"--address={base.get('BIND_HOST', '127.0.0.1')}",
            ],
            f"http://127.0.0.1:{flower_port}/healthcheck",
            env=service_env("analysis", overrides),
        )
    )
    scale = parse_scale(base.get("LAUNCHER_SCALE", ""))
    specs = [copy for spec in specs for copy in replicas(spec, scale.get(spec.name, 1))]
    for spec in specs:
        # Metrics summed over every process of one program (gunicorn workers, celery children).
        spec.env.setdefault(
            "PROMETHEUS_MULTIPROC_DIR",
            str(Path(spec.env.get("STATE_DIR", STATE)) / "prometheus" / spec.name),
        )
    return specs


def parse_scale(text: str) -> dict[str, int]:
    """``NAME=N,NAME=N`` (LAUNCHER_SCALE, or `up --scale NAME=N` repeated) as {NAME: N}."""
    scale: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, count = item.partition("=")
        if name not in SCALABLE or not count.isdigit() or int(count) < 1:
            raise ValueError(
                f"cannot scale {item!r}: NAME=N with N at least 1 and NAME one of "
                + ", ".join(SCALABLE)
            )
        scale[name] = int(count)
    return scale


def replicas(spec: ProcSpec, count: int) -> list[ProcSpec]:
    """`count` copies of one program, each a process of its own (restarted on its own).

    The first keeps the program's name, the others are `NAME-2`, `NAME-3`... The replicas of a
    web service all listen on its port with SO_REUSEPORT, so the kernel spreads the incoming
    connections among them (no balancer in between), and each also on a free port of its own,
    where its health is checked and where it can be reached alone. Each Celery worker gets a
    node name and a metrics port of its own.
    """
    if count == 1:
        return [spec]
    copies = []
    for number in range(1, count + 1):
        argv, env, health_url = list(spec.argv), dict(spec.env), spec.health_url
        if spec.name in SERVICES:
            own = servers.free_port()
            argv += ["--bind", f"{env.get('BIND_HOST', '127.0.0.1')}:{own}", "--reuse-port"]
            health_url = f"http://127.0.0.1:{own}/healthz"
        elif number > 1:
            node = argv.index("-n") + 1
            argv[node] = argv[node].replace("@", f"-{number}@", 1)
            if spec.name == "analysis-worker" and env.get("ANALYSIS_WORKER_METRICS_PORT") != "0":
                env["ANALYSIS_WORKER_METRICS_PORT"] = str(servers.free_port())
        name = spec.name if number == 1 else f"{spec.name}-{number}"
        copies.append(ProcSpec(name, spec.service, argv, health_url, env=env))
    return copies


def platform_ports(overrides: dict[str, str] | None = None) -> dict[str, tuple[int, str]]:
    """Every port `up` listens on: {what: (port, variable that moves it)}."""
    base = {**os.environ, **(overrides or {})}
    ports = {
        name: (int(base.get(f"{name.upper()}_PORT", port)), f"{name.upper()}_PORT")
        for name, (_, port) in SERVICES.items()
    }
    ports["flower"] = (int(base.get("FLOWER_PORT", FLOWER_PORT)), "FLOWER_PORT")
    return ports
