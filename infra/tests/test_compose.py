"""infra/docker-compose.yml: what can be proven without Docker."""

from __future__ import annotations

import re
import shlex
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Any

import pytest
from conftest import APP_SERVICES, INFRA, REPO

from common import events

REQUIRED_SERVICES = {
    "mongodb",
    "rabbitmq",
    "redis",
    "postgres",
    "gateway",
    "auth",
    "auth-relay",
    "playlist",
    "playlist-relay",
    "playlist-worker",
    "analysis",
    "analysis-worker",
    "flower",
    "prometheus",
    "grafana",
}
# Long-running services without a health check, and why.
NO_HEALTHCHECK = {"auth-relay": "no port: a plain loop, restarted by Compose when it exits"}
ONE_SHOT = {"auth-migrate", "analysis-migrate"}
SCALABLE = {
    "analysis-worker",
    "playlist-worker",
    "auth",
    "playlist",
    "analysis",
    "playlist-relay",
    "auth-relay",
}
# Host ports: (host address or "", host port, container port).
PUBLISHED = {
    "gateway": {("", "${GATEWAY_PORT:-4000}", "4000")},
    "grafana": {("", "${GRAFANA_PORT:-3000}", "3000")},
    "prometheus": {("", "${PROMETHEUS_PORT:-9090}", "9090")},
    "flower": {("127.0.0.1", "5555", "5555")},
    "rabbitmq": {("127.0.0.1", "15672", "15672")},
}
WEB_PORTS = {"gateway": "4000", "analysis": "3001", "auth": "3002", "playlist": "3003"}


def depends(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return spec.get("depends_on", {}) or {}


def has_healthcheck(name: str, spec: dict[str, Any], app_services: dict[str, str]) -> bool:
    check = spec.get("healthcheck")
    if check is not None:
        return not check.get("disable", False) and bool(check.get("test"))
    return name in app_services  # the image's HEALTHCHECK (infra/Dockerfile)


def command_words(spec: dict[str, Any]) -> list[str]:
    command = spec.get("command") or []
    words = shlex.split(command) if isinstance(command, str) else list(command)
    if words[:2] == ["sh", "-c"]:
        words = shlex.split(words[2].replace("$$", "$"))
    return [word for word in words if word != "exec"]


def test_compose_parses_with_every_required_service(compose, services):
    assert compose["name"] == "musicstream"
    assert set(services) >= REQUIRED_SERVICES, REQUIRED_SERVICES - set(services)


def test_no_fixed_container_names(services):
    named = [name for name, spec in services.items() if "container_name" in spec]
    assert named == [], "container_name prevents --scale and a second checkout on one host"


def test_scalable_services_publish_no_host_port(services):
    for name in SCALABLE:
        assert "ports" not in services[name], f"{name} publishes a port: it cannot --scale"


def test_only_the_intended_host_ports_are_published(services):
    published: dict[str, set[tuple[str, str, str]]] = {}
    for name, spec in services.items():
        for entry in spec.get("ports", []):
            parts = re.split(r":(?![^{]*\})", str(entry))
            host_ip, host, container = ["", *parts] if len(parts) == 2 else parts
            published.setdefault(name, set()).add((host_ip, host, container))
    assert published == PUBLISHED


def test_app_services_are_built_from_the_one_dockerfile(services, app_services):
    for name, service in app_services.items():
        spec = services[name]
        assert spec["build"]["context"] == ".."
        assert service in APP_SERVICES
        assert spec["image"] == f"musicstream/{service}:${{TAG:-latest}}", name
        if name in WEB_PORTS:
            assert spec["build"]["args"]["PORT"] == WEB_PORTS[name]
    # Every container of one image is built the same way (one image, one recipe).
    builds: dict[str, Any] = {}
    for name in app_services:
        builds.setdefault(services[name]["image"], services[name]["build"])
        assert services[name]["build"] == builds[services[name]["image"]], name


def test_every_long_running_service_has_a_healthcheck(services, app_services):
    for name, spec in services.items():
        if name in ONE_SHOT or name in NO_HEALTHCHECK:
            continue
        assert has_healthcheck(name, spec, app_services), f"{name} has no health check"
    for name in NO_HEALTHCHECK:
        assert services[name]["healthcheck"] == {"disable": True}
        assert services[name]["restart"] == "unless-stopped"


def test_depends_on_uses_conditions_that_can_be_met(services, app_services):
    for name, spec in services.items():
        for dependency, rule in depends(spec).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            condition = rule["condition"]
            if condition == "service_healthy":
                assert has_healthcheck(dependency, services[dependency], app_services), (
                    f"{name} waits for {dependency} to be healthy, which has no health check"
                )
            else:
                assert condition == "service_completed_successfully", (name, dependency)
                assert dependency in ONE_SHOT
                assert services[dependency]["restart"] == "no"


def test_dependency_graph_has_no_cycle(services):
    graph = {name: set(depends(spec)) for name, spec in services.items()}
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as exc:  # pragma: no cover - the assertion message
        pytest.fail(f"depends_on cycle: {exc.args[1]}")
    assert order.index("postgres") < order.index("auth-migrate") < order.index("auth")
    assert order.index("auth") < order.index("gateway")


def test_orm_services_wait_for_their_migrations(services):
    for name in ("auth", "auth-relay"):
        assert (
            depends(services[name])["auth-migrate"]["condition"] == "service_completed_successfully"
        )
    for name in ("analysis", "analysis-worker"):
        assert (
            depends(services[name])["analysis-migrate"]["condition"]
            == "service_completed_successfully"
        )


def test_stateful_services_keep_their_data_in_named_volumes(compose, services):
    declared = set(compose["volumes"])
    used: set[str] = set()
    for name, spec in services.items():
        for volume in spec.get("volumes", []):
            source = str(volume).split(":", 1)[0]
            if source.startswith("."):
                assert (INFRA / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in declared, f"{name} uses undeclared volume {source}"
                used.add(source)
    assert declared == used, f"declared but unused: {declared - used}"
    data = {
        "postgres": "/var/lib/postgresql/data",
        "mongodb": "/data/db",
        "redis": "/data",
        "rabbitmq": "/var/lib/rabbitmq",
        "prometheus": "/prometheus",
        "grafana": "/var/lib/grafana",
    }
    for name, path in data.items():
        targets = {str(v).split(":")[1] for v in services[name]["volumes"]}
        assert path in targets, f"{name} keeps its data outside a volume"
    # RabbitMQ names its data folder after the node (host) name: it must not change.
    assert services["rabbitmq"]["hostname"] == "rabbitmq"


def test_the_auth_key_survives_restarts_in_a_volume(services):
    key_file = services["auth"]["environment"]["JWT_PRIVATE_KEY_FILE"]
    folder = str(Path(key_file).parent)
    for name in ("auth-migrate", "auth"):
        mounts = {str(v).split(":")[1]: str(v).split(":")[0] for v in services[name]["volumes"]}
        assert mounts.get(folder) == "jwt-keys", name
    migrate = " ".join(command_words(services["auth-migrate"]))
    assert "ensure_jwt_keys" in migrate and "migrate --noinput" in migrate
    assert any((REPO / "auth_project").glob("*/management/commands/ensure_jwt_keys.py"))


def test_process_commands_exist_in_the_code(services, app_services):
    queues = {"analysis": events.ANALYSIS_QUEUE_NAME, "playlist": events.PLAYLIST_QUEUE_NAME}
    for name, service in app_services.items():
        words = command_words(services[name])
        if not words:
            continue
        project = REPO / f"{service}_project"
        if words[0] == "python":
            assert words[1] == f"{service}_project/manage.py", name
            command = words[2]
            if command not in ("migrate",):
                assert any(project.glob(f"*/management/commands/{command}.py")), (
                    f"{name} runs manage.py {command}, which {service} does not have"
                )
        elif words[0] == "celery":
            assert words[1:3] == ["-A", f"{service}_project"], name
            assert (project / f"{service}_project" / "celery.py").exists(), name
            if "worker" in words:
                assert words[words.index("-Q") + 1] == queues[service], name
        else:
            assert words[0] == "sh", name


def test_workers_are_named_per_replica(services):
    for name in ("analysis-worker", "playlist-worker"):
        words = command_words(services[name])
        node = words[words.index("-n") + 1]
        assert "$HOSTNAME" in node, "Celery node names must differ between replicas"
        assert "-E" in words, "Flower sees task events only from workers started with -E"


def test_services_reach_each_other_by_compose_name(services):
    gateway = services["gateway"]["environment"]
    for upstream, port in WEB_PORTS.items():
        if upstream == "gateway":
            continue
        assert gateway[f"{upstream.upper()}_SERVICE_URL"] == f"http://{upstream}:{port}"
    vhost = services["rabbitmq"]["environment"]["RABBITMQ_DEFAULT_VHOST"]
    for name, spec in services.items():
        env = spec.get("environment") or {}
        if "CELERY_BROKER_URL" in env:
            assert re.fullmatch(rf"amqp://[^@]+@rabbitmq:5672/{vhost}", env["CELERY_BROKER_URL"]), (
                name
            )
        if "REDIS_URL" in env:
            assert env["REDIS_URL"].startswith("redis://redis:6379/"), name


def test_each_orm_service_gets_its_own_database_and_role(services, app_services):
    init = (INFRA / "postgres" / "init" / "01-databases.sh").read_text()
    for name, service in app_services.items():
        url = (services[name].get("environment") or {}).get("DATABASE_URL")
        if url is None:
            continue
        assert service in ("auth", "analysis"), name
        assert re.fullmatch(
            rf"postgres://{service}:\$\{{{service.upper()}_DB_PASSWORD:\?[^}}]+\}}"
            rf"@postgres:5432/{service}",
            url,
        ), url
        assert f"${{{service.upper()}_DB_NAME:-{service}}}" in init


def test_secrets_are_required_not_defaulted(compose_text):
    for var in (
        "SECRET_KEY",
        "INTERNAL_SECRET",
        "POSTGRES_PASSWORD",
        "AUTH_DB_PASSWORD",
        "ANALYSIS_DB_PASSWORD",
        "MONGO_ROOT_PASSWORD",
        "MONGO_PLAYLIST_PASSWORD",
        "RABBITMQ_PASSWORD",
    ):
        uses = re.findall(rf"\$\{{{var}(:?[-?][^}}]*)?\}}", compose_text)
        assert uses, var
        assert all(use.startswith(":?") for use in uses), f"{var} must be required (:?)"


def test_django_processes_log_json_and_share_the_internal_secret(services, app_services):
    for name in app_services:
        env = services[name]["environment"]
        assert env["LOG_FORMAT"] == "json", name
        assert env["INTERNAL_SECRET"].startswith("${INTERNAL_SECRET:?"), name
        assert env["DEBUG"] == "${DEBUG:-false}", name


def test_multi_process_containers_count_metrics_in_a_private_tmpfs(services):
    for name in ("gateway", "auth", "playlist", "analysis"):
        env = services[name]["environment"]
        assert env["PROMETHEUS_MULTIPROC_DIR"] == "/tmp/prometheus", name
        assert any(str(t).startswith("/tmp/prometheus:") for t in services[name]["tmpfs"]), name
    worker = services["analysis-worker"]
    assert worker["environment"]["ANALYSIS_WORKER_METRICS_DIR"] == "/tmp/prometheus"
    assert any(str(t).startswith("/tmp/prometheus:") for t in worker["tmpfs"])
    # Flower exports the default registry of its single process.
    assert "PROMETHEUS_MULTIPROC_DIR" not in services["flower"]["environment"]


def test_rabbitmq_has_the_management_and_prometheus_plugins(services):
    mounts = {str(v).split(":")[1]: str(v).split(":")[0] for v in services["rabbitmq"]["volumes"]}
    plugins = (INFRA / mounts["/etc/rabbitmq/enabled_plugins"]).read_text()
    assert re.fullmatch(r"\[\s*rabbitmq_management\s*,\s*rabbitmq_prometheus\s*\]\.\s*", plugins)
    assert services["rabbitmq"]["image"].endswith("-management")


def test_grafana_login_defaults(services):
    env = services["grafana"]["environment"]
    assert env["GF_SECURITY_ADMIN_USER"] == "${GRAFANA_ADMIN_USER:-admin}"
    assert env["GF_SECURITY_ADMIN_PASSWORD"] == "${GRAFANA_ADMIN_PASSWORD:-admin}"
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"
    mounts = {str(v).split(":")[1]: str(v).split(":")[0] for v in services["grafana"]["volumes"]}
    home = env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (INFRA / mounts[str(Path(home).parent)] / Path(home).name).exists()


def test_images_are_pinned(services):
    for name, spec in services.items():
        if "build" in spec:
            continue
        image = spec["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin {image}"


def test_redis_has_a_memory_limit_and_never_evicts(services):
    # Eviction could drop a revoked token (it would work again) or an open breaker's state.
    words = command_words(services["redis"])
    assert words[0] == "redis-server"
    options = dict(zip(words[1::2], words[2::2], strict=False))
    assert options["--maxmemory-policy"] == "noeviction"
    limit = options["--maxmemory"]
    default = re.fullmatch(r"\$\{REDIS_MAXMEMORY:-(\d+)(mb|gb)\}", limit)
    assert default, limit
    assert int(default.group(1)) > 0  # 0 would mean no limit at all
    assert options["--appendonly"] == "yes"
