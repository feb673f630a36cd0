"""infra/k8s: every overlay renders, validates against the Kubernetes 1.31 schemas, passes checkov,
and agrees with the code (variables, probe paths, images, commands, queues).

kubectl (kustomize) must be installed; checkov and kubernetes-validate come from a virtualenv of
their own (k8s_support.ensure_tools). Without them the tests skip, or fail under CI=true.
"""

from __future__ import annotations

import ast
import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import envscan
import k8s_support as k8s
import pytest
import yaml
from conftest import APP_SERVICES, INFRA, REPO, ci, need_tool
from test_compose import command_words

from common import events
from devtools.platform import platform_specs
from devtools.project import ORM_SERVICES

KUBERNETES_VERSION = "1.31.0"
SECRET_NAMES = re.compile(
    r"^(SECRET_KEY|INTERNAL_SECRET|JWT_PRIVATE_KEY|.*PASSWORD.*|.*DATABASE_URL|MONGODB_URI|"
    r"REDIS_URL|CELERY_BROKER_URL)$"
)
WEB_PORTS = {"gateway": 4000, "analysis": 3001, "auth": 3002, "playlist": 3003}
MIGRATION_JOBS = {"auth-migrate": "auth", "analysis-migrate": "analysis"}
WORKER_QUEUES = {
    "analysis-worker": events.ANALYSIS_QUEUE_NAME,
    "playlist-worker": events.PLAYLIST_QUEUE_NAME,
}
# Metrics servers of processes without a web port: the variable that sets their port.
METRICS_PORT_VARS = {
    "analysis-worker": "ANALYSIS_WORKER_METRICS_PORT",
    "playlist-relay": "PLAYLIST_RELAY_METRICS_PORT",
}


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def kubectl() -> str:
    return need_tool(
        "kubectl", "kubectl with kustomize v5 (https://kubernetes.io/docs/tasks/tools/)"
    )


@pytest.fixture(scope="session")
def rendered(kubectl: str) -> dict[str, str]:
    out = {}
    for overlay in k8s.OVERLAYS:
        done = k8s.render(kubectl, overlay)
        assert done.returncode == 0, f"kubectl kustomize {overlay}:\n{done.stderr}"
        out[overlay] = done.stdout
    return out


@pytest.fixture(scope="session")
def objects(rendered: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    return {overlay: k8s.parse(text) for overlay, text in rendered.items()}


@pytest.fixture(scope="session")
def tools() -> Path:
    """The bin folder of the tools virtualenv; created (about a minute) when missing."""
    try:
        bin_dir, seconds = k8s.ensure_tools()
    except (k8s.ToolsUnavailable, subprocess.TimeoutExpired, OSError) as exc:
        message = f"checkov / kubernetes-validate could not be installed: {exc}"
        if ci():
            pytest.fail(f"CI=true and {message}")
        pytest.skip(message)
    if seconds:
        print(f"k8s tools installed in {seconds:.0f} s ({k8s.TOOLS_VENV})")
    return bin_dir


@pytest.fixture(scope="session")
def rendered_files(rendered: dict[str, str], tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("k8s")
    files = {}
    for overlay, text in rendered.items():
        files[overlay] = folder / f"{overlay}.yaml"
        files[overlay].write_text(text)
    return files


def run_checkov(tools: Path, path: Path) -> dict[str, Any]:
    done = subprocess.run(
        [
            str(tools / "checkov"),
            "--file",
            str(path),
            "--framework",
            "kubernetes",
            "--output",
            "json",
            "--skip-download",  # no network: the policies ship with the package
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={"PATH": "/usr/bin:/bin", "BC_SKIP_MAPPING": "TRUE", "LOG_LEVEL": "WARNING"},
    )
    assert done.stdout.strip().startswith(("{", "[")), done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads(done.stdout)
    reports = report if isinstance(report, list) else [report]
    [kubernetes] = [r for r in reports if r.get("check_type") == "kubernetes"]
    return kubernetes["results"]


def test_a_tools_install_that_fails_raises_and_leaves_no_half_virtualenv(tmp_path):
    """What the fixture turns into a skip, or a failure under CI=true."""
    requirements = tmp_path / "k8s-tools.txt"
    requirements.write_text("musicstream-no-such-package==0.0.0\n")
    venv = tmp_path / "venv"
    with pytest.raises(k8s.ToolsUnavailable, match="failed"):
        k8s.ensure_tools(venv, requirements)
    assert not venv.exists()
    assert k8s.tools_digest(requirements) != k8s.tools_digest(k8s.TOOLS_REQUIREMENTS)


def test_the_tools_virtualenv_is_stamped_with_its_requirements(tools):
    stamp = k8s.TOOLS_VENV / ".requirements.sha256"
    assert stamp.read_text() == k8s.tools_digest()
    pinned = k8s.TOOLS_REQUIREMENTS.read_text().splitlines()
    assert all("==" in line for line in pinned if line and not line.startswith("#"))


# ------------------------------------------------------------------ rendering and schemas


@pytest.mark.parametrize("overlay", k8s.OVERLAYS)
def test_overlay_renders_into_its_namespace(objects, overlay):
    found = objects[overlay]
    [namespace] = [o["metadata"]["name"] for o in found if o["kind"] == "Namespace"]
    for obj in found:
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == namespace, obj["metadata"]["name"]
    assert {o["kind"] for o in found} >= {
        "Deployment",
        "Service",
        "ConfigMap",
        "Job",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "Ingress",
        "ServiceAccount",
    }


@pytest.mark.parametrize("overlay", k8s.OVERLAYS)
def test_every_object_validates_against_the_kubernetes_schemas(tools, objects, overlay, tmp_path):
    standard = [o for o in objects[overlay] if o["kind"] not in k8s.CUSTOM_KINDS]
    path = tmp_path / f"{overlay}.yaml"
    path.write_text(yaml.safe_dump_all(standard))
    done = subprocess.run(
        [str(tools / "kubernetes-validate"), "--strict", "-k", KUBERNETES_VERSION, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    passed = re.findall(r"passed for resource", output)
    assert len(passed) == len(standard), output  # a kind without a schema would be a WARN
    assert "Couldn't find schema" not in output


def test_custom_resources_are_only_kedas(objects):
    # kubernetes-validate has no schema for them; test_workers_scale_on_their_queue checks them.
    custom = {o["kind"] for found in objects.values() for o in found} & k8s.CUSTOM_KINDS
    kinds = {o["apiVersion"] for found in objects.values() for o in found if o["kind"] in custom}
    assert kinds <= {"keda.sh/v1alpha1"}


@pytest.mark.parametrize("overlay", k8s.OVERLAYS)
def test_checkov_passes_and_every_skip_says_why(tools, rendered_files, overlay):
    results = run_checkov(tools, rendered_files[overlay])
    failed = [
        f"{c['check_id']} {c['resource']}: {c['check_name']}" for c in results["failed_checks"]
    ]
    assert failed == [], "\n".join(failed)
    assert len(results["passed_checks"]) > 100
    for check in results["skipped_checks"]:
        reason = (check.get("check_result") or {}).get("suppress_comment") or ""
        assert len(reason.split()) >= 5, f"{check['check_id']} on {check['resource']}: {reason!r}"


def test_checkov_catches_an_insecure_container(tools, objects, tmp_path):
    """The gate works: the prod gateway made writable and root-capable fails checkov."""
    found = copy.deepcopy(objects["prod"])
    gateway = k8s.workloads(found)["gateway"]
    container = k8s.containers(gateway)[0]
    container["securityContext"] = {"allowPrivilegeEscalation": True}
    del k8s.pod_spec(gateway)["securityContext"]
    path = tmp_path / "insecure.yaml"
    path.write_text(yaml.safe_dump_all([gateway]))
    failed = {c["check_id"] for c in run_checkov(tools, path)["failed_checks"]}
    assert {"CKV_K8S_20", "CKV_K8S_22", "CKV_K8S_23", "CKV_K8S_28"} <= failed, failed


# ------------------------------------------------------------------ processes and images


def platform_processes() -> set[str]:
    return {spec.name for spec in platform_specs()}


@pytest.mark.parametrize("overlay", k8s.OVERLAYS)
def test_every_process_of_the_platform_is_a_workload(objects, overlay):
    names = set(k8s.by_kind(objects[overlay], "Deployment"))
    assert names == platform_processes()
    jobs = {re.sub(r"-[^-]+$", "", name) for name in k8s.by_kind(objects[overlay], "Job")}
    assert jobs == set(MIGRATION_JOBS)


def dockerfile_services() -> set[str]:
    text = (INFRA / "Dockerfile").read_text()
    match = re.search(r"SERVICE=([a-z]+(?:\|[a-z]+)+)", text)
    assert match, "infra/Dockerfile names the SERVICE values in its error message"
    return set(match.group(1).split("|"))


@pytest.mark.parametrize("overlay", k8s.OVERLAYS)
def test_images_are_the_dockerfile_targets_compose_builds(objects, services, overlay):
    assert dockerfile_services() == set(APP_SERVICES)
    for name, workload in k8s.workloads(objects[overlay]).items():
        process = re.sub(r"-migrate-[^-]+$", "-migrate", name)
        for container in k8s.containers(workload):
            repository, tag = k8s.image_parts(container["image"])
            assert repository.split("/")[0] == "musicstream", container["image"]
            assert k8s.service_of(container) in dockerfile_services(), container["image"]
            assert tag and tag != "latest", f"{name}: the overlay must set the image tag"
            compose_image = services[process]["image"].split(":")[0]
            assert repository == compose_image, (name, container["image"], compose_image)
    for service, port in WEB_PORTS.items():
        [container] = k8s.containers(k8s.workloads(objects[overlay])[service], init=False)
        assert [p["containerPort"] for p in container["ports"]] == [port]
        assert services[service]["build"]["args"]["PORT"] == str(port)  # the image's EXPOSE
        # The entry point's default command (gunicorn) runs: args would replace it.
        assert "args" not in container and "command" not in container, service


@pytest.mark.parametrize("overlay", k8s.OVERLAYS)
def test_commands_are_composes(objects, services, overlay):
    """The same programs as Compose; `command` is never set (it would skip the entry point)."""
    for name, workload in k8s.workloads(objects[overlay]).items():
        for container in k8s.containers(workload):
            assert "command" not in container, f"{name}/{container['name']} bypasses entrypoint"
        [main] = k8s.containers(workload, init=False)
        if name in WEB_PORTS:
            continue
        args = main["args"]
        if name in WORKER_QUEUES:
            compose = command_words(services[name])
            assert args[: args.index("-n")] == compose[: compose.index("-n")]
            assert args[args.index("-Q") + 1] == WORKER_QUEUES[name]
            assert args[args.index("-n") + 1].endswith("@%h"), "one node name per pod"
            assert "-E" in args
            for variable in re.findall(r"\$\((\w+)\)", " ".join(args)):
                assert variable in {e["name"] for e in main.get("env", [])} | {"LOG_LEVEL"}
        elif name in MIGRATION_JOBS or re.sub(r"-[^-]+$", "", name) in MIGRATION_JOBS:
            service = k8s.service_of(main)
            assert args == ["python", f"{service}_project/manage.py", "migrate", "--noinput"]
        else:
            assert args == command_words(services[name]), name


@pytest.mark.parametrize("overlay", k8s.OVERLAYS)
def test_migration_jobs_are_named_after_the_release(objects, overlay):
    jobs = k8s.by_kind(objects[overlay], "Job")
    for name, job in jobs.items():
        [container] = k8s.containers(job)
        _, tag = k8s.image_parts(container["image"])
        service = k8s.service_of(container)
        assert name == f"{service}-migrate-{tag}", name
        assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
        assert job["spec"]["ttlSecondsAfterFinished"] > 0
    # The Deployments of the ORM services wait for their release's schema.
    for name, workload in k8s.workloads(objects[overlay]).items():
        service = k8s.service_of(k8s.containers(workload, init=False)[0])
        if service not in ORM_SERVICES or workload["kind"] != "Deployment":
            continue
        if name == "flower":
            continue  # reads the broker only
        waits = [c for c in k8s.containers(workload) if c["name"] == "wait-for-migrations"]
        assert waits, f"{name} does not wait for the migrations"
        assert "migrate --check" in waits[0]["args"][-1]


# ------------------------------------------------------------------ environment and probes

# One interpreter per service imports the heavy packages once, then forks a child per
# distinct container environment (all at once): the child takes exactly that environment and
# loads the settings.
SETTINGS_PROBE = """
import importlib, json, os, sys
import celery, django, kombu, rest_framework  # noqa: F401 - imported once, before the forks
project = sys.argv[1]
children = []
for line in sys.stdin:
    case = json.loads(line)
    pid = os.fork()
    if pid == 0:
        answer = {"label": case["label"]}
        try:
            os.environ.clear()
            os.environ.update(case["env"])
            django.setup()
            from django.conf import settings
            from django.urls import Resolver404, resolve
            try:
                importlib.import_module(project + ".celery")
            except ModuleNotFoundError:
                pass
            missing = []
            for path in case["paths"]:
                try:
                    resolve(path)
                except Resolver404:
                    missing.append(path)
            answer.update(missing=missing, allowed_hosts=list(settings.ALLOWED_HOSTS))
        except BaseException as exc:
            answer["error"] = f"{type(exc).__name__}: {exc}"[:1500]
        # One short line per child: writes below PIPE_BUF never interleave.
        os.write(1, (json.dumps(answer) + "\\n").encode())
        os._exit(0)
    children.append(pid)
for pid in children:
    os.waitpid(pid, 0)
"""


def local_env(service: str, manifest_env: dict[str, str], scratch: Path) -> dict[str, str]:
    """What the container's process sees, on this machine: the image's ENV, then the
    manifest's; container paths (/app/.state, /tmp/...) moved into a scratch folder."""
    env = {"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin"}
    for key, value in {**k8s.dockerfile_env(), **manifest_env}.items():
        value = value.replace("${SERVICE}", service)
        if value.startswith(("/app/.state", "/tmp")):
            value = str(scratch / value.lstrip("/"))
            Path(value).mkdir(parents=True, exist_ok=True)
        env[key] = value
    env["PYTHONPATH"] = f"{REPO / f'{service}_project'}:{REPO}"
    return env


def probe_paths(container: dict[str, Any]) -> list[str]:
    paths = []
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        http = (container.get(kind) or {}).get("httpGet")
        if http and http["port"] == "http":
            paths.append(http["path"])
    return paths


def probe_hosts(container: dict[str, Any]) -> set[str]:
    return {
        header["value"]
        for kind in ("startupProbe", "livenessProbe", "readinessProbe")
        for header in ((container.get(kind) or {}).get("httpGet") or {}).get("httpHeaders", [])
        if header["name"] == "Host"
    }


@pytest.mark.parametrize("overlay", k8s.OVERLAYS)
def test_every_container_starts_with_the_variables_it_is_given(objects, overlay, tmp_path):
    """Each container's settings load (and its Celery app imports) with only the variables of
    the image and the manifest: a variable the code requires (a server URL, a secret) that the
    manifest lacks fails here by name. Every web probe path resolves in its URLconf, and the
    probes' Host header is allowed."""
    found = objects[overlay]
    config_maps = k8s.by_kind(found, "ConfigMap")
    secrets = k8s.secret_values(overlay, found)
    problems: list[str] = []
    cases: dict[str, list[dict[str, Any]]] = {}
    hosts: dict[str, set[str]] = {}
    labels: dict[str, str] = {}
    for name, workload in k8s.workloads(found).items():
        for container in k8s.containers(workload):
            label = f"{name}/{container['name']}"
            service = k8s.service_of(container)
            env, missing = k8s.container_env(container, config_maps, secrets)
            problems += [f"{label}: {m}" for m in missing]
            paths = [] if container.get("args") else probe_paths(container)  # gunicorn only
            hosts[label] = probe_hosts(container) if paths else set()
            if paths and not hosts[label]:
                problems.append(f"{label}: the probes send the pod's IP as Host")
            key = json.dumps([service, sorted(env.items()), paths])
            if key in labels:  # the same environment as a container already checked
                hosts[labels[key]] |= hosts.pop(label)
                continue
            labels[key] = label
            scratch = tmp_path / label.replace("/", "-")
            case = {"label": label, "env": local_env(service, env, scratch), "paths": paths}
            cases.setdefault(service, []).append(case)
    for service, service_cases in cases.items():
        done = subprocess.run(
            [sys.executable, "-c", SETTINGS_PROBE, f"{service}_project"],
            input="".join(json.dumps(case) + "\n" for case in service_cases),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=REPO,
            env=service_cases[0]["env"],
        )
        assert done.returncode == 0, done.stderr[-2000:]
        answers = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
        assert len(answers) == len(service_cases), done.stdout[-2000:] + done.stderr[-2000:]
        for answer in answers:
            label = answer["label"]
            if "error" in answer:
                problems.append(f"{label}: {answer['error']}")
                continue
            problems += [f"{label}: probe path {p} not in the URLconf" for p in answer["missing"]]
            for host in hosts[label]:
                if not {"*", host} & set(answer["allowed_hosts"]):
                    problems.append(f"{label}: probe Host {host} not in ALLOWED_HOSTS")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("overlay", k8s.OVERLAYS)
def test_every_variable_given_is_read_and_composes_are_all_given(objects, services, overlay):
    found = objects[overlay]
    config_maps = k8s.by_kind(found, "ConfigMap")
    secrets = k8s.secret_values(overlay, found)
    reads = envscan.reads_by_service()
    for name, workload in k8s.workloads(found).items():
        [main] = k8s.containers(workload, init=False)
        service = k8s.service_of(main)
        env, _ = k8s.container_env(main, config_maps, secrets)
        args = " ".join(main.get("args", []))
        for variable in env:
            assert envscan.is_read(variable, reads[service]) or f"$({variable})" in args, (
                f"{name} is given {variable}, which neither {service}'s code nor its command reads"
            )
        process = re.sub(r"-migrate-[^-]+$", "-migrate", name)
        compose_env = set(services[process].get("environment") or {})
        assert compose_env <= set(env) | set(k8s.dockerfile_env()), (
            f"{name}: Compose sets {sorted(compose_env - set(env))}, Kubernetes does not"
        )


@pytest.mark.parametrize("overlay", k8s.OVERLAYS)
def test_probes(objects, overlay):
    for name, workload in k8s.workloads(objects[overlay]).items():
        if workload["kind"] == "Job":
            continue
        [main] = k8s.containers(workload, init=False)
        annotations = workload["metadata"].get("annotations", {})
        skipped = " ".join(annotations.values())
        if "CKV_K8S_8=" in skipped:
            assert "ports" not in main, f"{name} has a port: probe it"
            continue
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert kind in main, f"{name} has no {kind}"
        if name in WEB_PORTS:
            assert main["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert main["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert main["startupProbe"]["httpGet"]["path"] == "/healthz"
        elif name in METRICS_PORT_VARS:
            port = {p["name"]: p["containerPort"] for p in main["ports"]}["metrics"]
            env = {e["name"]: e.get("value") for e in main["env"]}
            assert env[METRICS_PORT_VARS[name]] == str(port), name
        elif name == "flower":
            assert main["livenessProbe"]["httpGet"]["path"] == "/healthcheck"
            from flower.urls import handlers

            patterns = [h[0] if isinstance(h, tuple) else h.regex.pattern for h in handlers]
            assert any(re.fullmatch(p, "/healthcheck") for p in patterns)
        else:
            command = " ".join(main["livenessProbe"]["exec"]["command"])
            assert "inspect ping" in command and "$HOSTNAME" in command, name


# ------------------------------------------------------------------ security


def writable_paths(container: dict[str, Any]) -> list[str]:
    env = {e["name"]: e.get("value") or "" for e in container.get("env", [])}
    paths = ["/tmp", "/app/.state"]
    paths += [
        v
        for k, v in env.items()
        if k in ("PROMETHEUS_MULTIPROC_DIR", "ANALYSIS_WORKER_METRICS_DIR") and v
    ]
    return paths


@pytest.mark.parametrize("overlay", k8s.OVERLAYS)
def test_pods_are_locked_down(objects, overlay):
    for name, workload in k8s.workloads(objects[overlay]).items():
        spec = k8s.pod_spec(workload)
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for container in k8s.containers(workload):
            context = container["securityContext"]
            where = f"{name}/{container['name']}"
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            assert context["runAsUser"] == 10001  # the image's user app (infra/Dockerfile)
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            for path in writable_paths(container):
                mount = next((m for m in mounts if path == m or path.startswith(m + "/")), None)
                assert mount, f"{where} writes {path}, which no volume covers"
                assert "emptyDir" in volumes[mounts[mount]], f"{where}: {path}"
            limits = container["resources"]["limits"]
            requests = container["resources"]["requests"]
            assert {"cpu", "memory"} <= set(limits) and {"cpu", "memory"} <= set(requests)


@pytest.mark.parametrize("overlay", k8s.OVERLAYS)
def test_secrets_stay_out_of_config_maps(objects, overlay):
    for name, config in k8s.by_kind(objects[overlay], "ConfigMap").items():
        leaked = [key for key in config.get("data", {}) if SECRET_NAMES.match(key)]
        assert not leaked, f"ConfigMap {name} holds {leaked}: they belong in a Secret"
    for workload in k8s.workloads(objects[overlay]).values():
        for container in k8s.containers(workload):
            for item in container.get("env", []):
                if SECRET_NAMES.match(item["name"]):
                    assert "secretKeyRef" in item.get("valueFrom", {}), item["name"]
    # The JWT signing key: a Secret volume (prod), or made inside the pod (dev).
    auth = k8s.pod_spec(k8s.workloads(objects[overlay])["auth"])
    [jwt] = [v for v in auth["volumes"] if v["name"] == "jwt"]
    if overlay == "prod":
        assert jwt["secret"]["secretName"] == "musicstream-jwt"
    else:
        assert "emptyDir" in jwt and "secret" not in jwt


def policies_selecting(
    policies: list[dict[str, Any]], labels: dict[str, str], kind: str
) -> list[dict[str, Any]]:
    def selects(selector: dict[str, Any]) -> bool:
        for key, value in selector.get("matchLabels", {}).items():
            if labels.get(key) != value:
                return False
        for expression in selector.get("matchExpressions", []):
            assert expression["operator"] == "In"
            if labels.get(expression["key"]) not in expression["values"]:
                return False
        return True

    return [
        p
        for p in policies
        if kind in p["spec"].get("policyTypes", []) and selects(p["spec"]["podSelector"])
    ]


@pytest.mark.parametrize("overlay", k8s.OVERLAYS)
def test_network_policies_let_in_only_what_they_should(objects, overlay):
    policies = list(k8s.by_kind(objects[overlay], "NetworkPolicy").values())
    gateway_pods = {"app.kubernetes.io/name": "gateway"}
    for name, workload in k8s.workloads(objects[overlay]).items():
        labels = workload["spec"]["template"]["metadata"]["labels"]
        for kind in ("Ingress", "Egress"):
            assert policies_selecting(policies, labels, kind), f"{name}: no {kind} policy"
        sources = [
            peer
            for policy in policies_selecting(policies, labels, "Ingress")
            for rule in policy["spec"].get("ingress", [])
            for peer in rule.get("from", [])
        ]
        if name == "gateway":
            assert sources and all(set(p) == {"namespaceSelector"} for p in sources)
        elif name in WEB_PORTS:
            assert sources == [{"podSelector": {"matchLabels": gateway_pods}}], name
        else:
            assert sources == [], f"{name} (no server) accepts connections"
        egress_rules = [
            rule
            for policy in policies_selecting(policies, labels, "Egress")
            for rule in policy["spec"].get("egress", [])
        ]
        ports = {p["port"] for rule in egress_rules for p in rule.get("ports", [])}
        assert 53 in ports, f"{name}: no DNS"
        if name != "gateway":
            assert not ({3001, 3002, 3003} & ports), f"{name} may call the services"
    ingress = k8s.by_kind(objects[overlay], "Ingress")
    [gateway_ingress] = ingress.values()
    assert gateway_ingress["spec"]["tls"][0]["secretName"]
    backends = {
        path["backend"]["service"]["name"]
        for rule in gateway_ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    }
    assert backends == {"gateway"}
    hosts = set(gateway_ingress["spec"]["tls"][0]["hosts"])
    assert hosts == {rule["host"] for rule in gateway_ingress["spec"]["rules"]}
    gateway_hosts = k8s.by_kind(objects[overlay], "ConfigMap")
    [config] = [c for n, c in gateway_hosts.items() if n.startswith("gateway-config")]
    assert hosts <= set(config["data"]["ALLOWED_HOSTS"].split(",")), "gateway refuses its host"


# ------------------------------------------------------------------ scaling and shutdown


def gunicorn_graceful_timeout() -> int:
    tree = ast.parse((REPO / "common" / "gunicorn_conf.py").read_text())
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and getattr(node.targets[0], "id", "") == "graceful_timeout"
        ):
            return int(ast.literal_eval(node.value))
    raise AssertionError("graceful_timeout not found in common/gunicorn_conf.py")


@pytest.mark.parametrize("overlay", k8s.OVERLAYS)
def test_shutdown_is_graceful(objects, overlay):
    task_limit = max(int(v) for v in envscan.literal_defaults()["CELERY_TASK_TIME_LIMIT"])
    for name, workload in k8s.workloads(objects[overlay]).items():
        spec = k8s.pod_spec(workload)
        grace = spec.get("terminationGracePeriodSeconds", 30)
        [main] = k8s.containers(workload, init=False)
        if name in WORKER_QUEUES:
            assert grace > task_limit, f"{name}: warm shutdown needs > {task_limit} s"
        if name in WEB_PORTS:
            sleep = main["lifecycle"]["preStop"]["sleep"]["seconds"]
            assert grace > sleep + gunicorn_graceful_timeout(), name


@pytest.mark.parametrize("overlay", k8s.OVERLAYS)
def test_every_deployment_has_a_disruption_budget(objects, overlay):
    budgets = k8s.by_kind(objects[overlay], "PodDisruptionBudget")
    for name, deployment in k8s.by_kind(objects[overlay], "Deployment").items():
        assert name in budgets, name
        assert budgets[name]["spec"]["selector"] == deployment["spec"]["selector"]
        assert budgets[name]["spec"].get("maxUnavailable") == 1  # never blocks a drain


@pytest.mark.parametrize("overlay", k8s.OVERLAYS)
def test_the_gateway_scales_on_cpu(objects, overlay):
    [hpa] = k8s.by_kind(objects[overlay], "HorizontalPodAutoscaler").values()
    assert hpa["spec"]["scaleTargetRef"]["name"] == "gateway"
    [metric] = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    # The autoscaler owns the count: a replicas field would reset it on every apply.
    assert "replicas" not in k8s.by_kind(objects[overlay], "Deployment")["gateway"]["spec"]


def test_workers_scale_on_their_queue(objects):
    prod = objects["prod"]
    scaled = k8s.by_kind(prod, "ScaledObject")
    deployments = k8s.by_kind(prod, "Deployment")
    assert set(scaled) == set(WORKER_QUEUES)
    secrets = k8s.secret_values("prod", prod)
    [auth] = k8s.by_kind(prod, "TriggerAuthentication").values()
    for ref in auth["spec"]["secretTargetRef"]:
        assert ref["key"] in secrets[ref["name"]]
    for name, obj in scaled.items():
        assert obj["spec"]["scaleTargetRef"]["name"] == name and name in deployments
        assert "replicas" not in deployments[name]["spec"], f"KEDA owns {name}'s replicas"
        [trigger] = obj["spec"]["triggers"]
        assert trigger["type"] == "rabbitmq"
        assert trigger["metadata"]["queueName"] == WORKER_QUEUES[name]
        assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
        assert obj["spec"]["minReplicaCount"] >= 1
    assert not k8s.by_kind(objects["dev"], "ScaledObject")  # dev: no KEDA needed


def test_relays_run_two_replicas_in_prod(objects):
    """Safe by the relay decision (docs/kubernetes.md; tests: test_relay_replicas.py)."""
    deployments = k8s.by_kind(objects["prod"], "Deployment")
    for name in ("auth-relay", "playlist-relay"):
        assert deployments[name]["spec"]["replicas"] == 2
    for path in (
        REPO / "auth_project" / "tests" / "test_relay_replicas.py",
        REPO / "playlist_project" / "playlists" / "tests" / "test_relay_replicas.py",
    ):
        assert path.exists(), path
