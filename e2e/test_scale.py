"""`python3 manage_all.py up --scale analysis-worker=3 --scale gateway=2`, as real processes.

The platform starts as `up` starts it with that scale (``LAUNCHER_SCALE``, which `--scale`
sets): three analysis Celery workers on one queue, two gateway replicas sharing the gateway's
port (SO_REUSEPORT: the kernel spreads connections, no balancer in between), each also on a
port of its own. Events are counted exactly once whichever worker takes them; a token logged
out through one replica is refused by the other (the revocation list is in Redis, not in a
replica).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from urllib.parse import urlsplit

import pytest
import requests
from conftest import ROOT, settle, start_platform

from devtools.platform import parse_scale, platform_specs

pytestmark = pytest.mark.e2e

WORKERS = ("analysis-worker", "analysis-worker-2", "analysis-worker-3")
GATEWAYS = ("gateway", "gateway-2")
PLAYLIST = {"name": "scaled", "tracks": [{"title": "t", "genre": "jazz"}]}


def test_a_scale_of_one_is_the_table_without_scale():
    assert [
        (s.name, s.argv, s.health_url) for s in platform_specs({"LAUNCHER_SCALE": "gateway=1"})
    ] == [(s.name, s.argv, s.health_url) for s in platform_specs({})]


def test_replicas_get_their_own_names_ports_nodes_and_metrics():
    scale = "gateway=2,analysis-worker=3"
    table = platform_specs(
        dict(LAUNCHER_SCALE=scale, GATEWAY_PORT="4100", ANALYSIS_WORKER_METRICS_PORT="9301")
    )
    specs = {spec.name: spec for spec in table}
    for name in GATEWAYS:
        argv = specs[name].argv
        binds = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--bind"]
        assert "--reuse-port" in argv
        assert binds[0] == "127.0.0.1:4100"  # the shared port
        assert specs[name].health_url == f"http://{binds[1]}/healthz"  # its own
    assert specs["gateway"].health_url != specs["gateway-2"].health_url
    nodes = [specs[name].argv[specs[name].argv.index("-n") + 1] for name in WORKERS]
    assert nodes == ["analysis@%h", "analysis-2@%h", "analysis-3@%h"]
    ports = [specs[name].env["ANALYSIS_WORKER_METRICS_PORT"] for name in WORKERS]
    assert ports[0] == "9301" and len(set(ports)) == 3
    folders = {specs[name].env["PROMETHEUS_MULTIPROC_DIR"] for name in (*WORKERS, *GATEWAYS)}
    assert len(folders) == 5


@pytest.mark.parametrize(
    "text", ["auth-relay=2", "flower=2", "gateway=0", "gateway=two", "gateway"]
)
def test_what_cannot_be_scaled_is_refused(text):
    with pytest.raises(ValueError, match="analysis-worker, playlist-worker"):
        parse_scale(text)


def test_up_refuses_a_bad_scale_before_starting_anything(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "manage_all.py"), "up", "--scale", "auth-relay=2"],
        env={**os.environ, "STATE_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "cannot scale 'auth-relay=2'" in done.stdout
    assert not (tmp_path / "up.pid").exists() and not (tmp_path / "postgres").exists()


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, stdout=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def scaled():
    """The scaled platform, on a broker of its own: the suite's `platform` may run beside it,
    and two platforms on one vhost would share their queues and their workers' node names (a
    Celery node's control queue is exclusive: the second `analysis@host` dies)."""
    amqp = os.environ.get("TEST_AMQP_URL")
    vhost = f"{urlsplit(amqp).path.lstrip('/')}-scale" if amqp else None
    if vhost:
        rabbitmqctl("add_vhost", vhost)
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")

    def route(kind: str, url: str) -> str:
        return f"{url.rsplit('/', 1)[0]}/{vhost}" if kind == "amqp" and vhost else url

    extra = {
        "LAUNCHER_SCALE": "analysis-worker=3,gateway=2",
        # Without RabbitMQ, Celery's Redis transport: keys of this platform only.
        "CELERY_BROKER_KEY_PREFIX": f"{os.environ.get('CACHE_KEY_PREFIX', 'e2e')}-scale-broker:",
    }
    try:
        with start_platform(route=route, extra=extra) as running:
            yield running
    finally:
        if vhost:
            rabbitmqctl("delete_vhost", vhost)


def alone(scaled, name: str) -> str:
    """The base URL of one replica, on its own port."""
    spec = next(spec for spec in scaled.platform.specs if spec.name == name)
    return spec.health_url.removesuffix("/healthz")


def log_text(scaled, name: str) -> str:
    path = scaled.platform.log_dir / f"{name}.log"
    return path.read_text(errors="replace") if path.exists() else ""


def wait_for(check, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        time.sleep(0.3)
    assert check(), what


def register(base: str) -> dict:
    """A new user, registered through `base`: its token and refresh token."""
    name = f"scale_{uuid.uuid4().hex[:10]}"
    made = requests.post(
        f"{base}/api/auth/register",
        json={"username": name, "password": "correct horse battery staple 42"},
        timeout=10,
    )
    assert made.status_code == 201, made.text
    return made.json()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_the_table_has_three_workers_and_two_gateways(scaled):
    names = [spec.name for spec in scaled.platform.specs]
    assert [name for name in names if name.startswith("analysis-worker")] == list(WORKERS)
    assert [name for name in names if name.startswith("gateway")] == list(GATEWAYS)
    assert names.count("playlist-worker") == names.count("auth-relay") == 1
    assert scaled.platform.dead() == []


def test_three_workers_count_every_event_exactly_once(scaled):
    # The workers have no health URL: wait until each has joined the queue before the burst,
    # so the broker spreads the events over all three.
    for name in WORKERS:
        node = name.replace("analysis-worker", "analysis")
        wait_for(
            lambda n=name, nd=node: (
                f"{nd}@" in log_text(scaled, n) and " ready." in log_text(scaled, n)
            ),
            f"{name} never became ready",
        )
    token = register(scaled.gateway)["token"]
    codes: list[int] = []

    def writer() -> None:
        session = requests.Session()
        session.headers.update(bearer(token))
        for _ in range(15):
            made = session.post(f"{scaled.gateway}/api/playlists", json=PLAYLIST, timeout=10)
            codes.append(made.status_code)
            if made.status_code == 201:
                url = f"{scaled.gateway}/api/playlists/{made.json()['id']}/plays"
                codes.append(session.post(url, json={"track": 0}, timeout=10).status_code)

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sorted(codes) == [201] * 60 + [202] * 60  # 60 playlists created, 60 plays

    def counts():
        body = requests.get(f"{scaled.gateway}/api/analysis", headers=bearer(token), timeout=10)
        return body.json()["playlists_created"], body.json()["plays"]

    settle(counts, (60, 60))
    # Every worker took part: the broker hands messages round the consumers that have room.
    idle = [name for name in WORKERS if "counts updated" not in log_text(scaled, name)]
    assert idle == [], f"these workers counted nothing: {idle}"


def test_a_logout_through_one_gateway_replica_is_refused_by_the_other(scaled):
    first, second = alone(scaled, "gateway"), alone(scaled, "gateway-2")
    assert first != second
    session = register(first)
    me = requests.get(f"{second}/api/auth/me", headers=bearer(session["token"]), timeout=10)
    assert me.status_code == 200, me.text
    logout = requests.post(
        f"{first}/api/auth/logout",
        json={"refresh": session["refresh"]},
        headers=bearer(session["token"]),
        timeout=10,
    )
    assert logout.status_code == 204, logout.text
    for replica in (second, first):
        again = requests.get(f"{replica}/api/auth/me", headers=bearer(session["token"]), timeout=10)
        assert again.status_code == 401, (replica, again.text)
        assert again.json()["code"] == "token_revoked"


def test_the_shared_port_spreads_connections_over_both_replicas(scaled):
    token = register(scaled.gateway)["token"]
    ids = [uuid.uuid4().hex for _ in range(40)]
    for request_id in ids:
        # A connection per request: the kernel picks a replica per connection.
        response = requests.get(
            f"{scaled.gateway}/api/playlists",
            headers={**bearer(token), "X-Request-ID": request_id, "Connection": "close"},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        assert response.headers["X-Request-ID"] == request_id

    def served() -> dict[str, set[str]]:
        return {name: {i for i in ids if i in log_text(scaled, name)} for name in GATEWAYS}

    wait_for(
        lambda: set().union(*served().values()) == set(ids), "a request was logged by no replica"
    )
    by_replica = served()
    assert not by_replica["gateway"] & by_replica["gateway-2"], "a request served twice"
    assert all(by_replica.values()), {name: len(found) for name, found in by_replica.items()}
