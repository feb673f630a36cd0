"""What operators rely on: every metric the dashboard and alerts use exists, and logs keep secrets.

The platform runs as real processes (see conftest.py); traffic here makes labelled series appear.
"""

import json
import time
from pathlib import Path

import pytest
import requests

from infra.tests.metric_names import metric_names_by_source, missing_from

pytestmark = pytest.mark.e2e

# Where each source's series come from in a platform run (RabbitMQ's plugin needs Docker's
# image, and Prometheus makes its own series: neither is part of this run).
SCRAPED = {
    "django": ("gateway", "auth", "playlist", "analysis"),
    "gateway": ("gateway",),
    "playlist": ("playlist", "playlist-relay"),  # the relay publishes, and counts it
    "analysis": ("analysis", "analysis-worker"),
    "flower": ("flower",),
}


def make_traffic(platform, api, user):
    gw, auth = platform.gateway, {"Authorization": f"Bearer {user['token']}"}
    created = api.post(
        f"{gw}/api/playlists",
        json={"name": "obs", "tracks": [{"title": "t", "genre": "jazz"}]},
        headers=auth,
        timeout=10,
    )
    assert created.status_code == 201
    pid = created.json()["id"]
    api.patch(f"{gw}/api/playlists/{pid}", json={"name": "obs2"}, headers=auth, timeout=10)
    api.post(f"{gw}/api/playlists/{pid}/plays", json={"track": 0}, headers=auth, timeout=10)
    api.get(f"{gw}/api/analysis", headers=auth, timeout=10)
    api.get(f"{gw}/api/analysis", headers=auth, timeout=10)
    api.get(f"{gw}/api/analysis/genres?scope=global", headers=auth, timeout=10)
    api.delete(f"{gw}/api/playlists/{pid}", headers=auth, timeout=10)
    assert (
        api.get(
            f"{gw}/api/playlists", headers={"Authorization": "Bearer nope"}, timeout=10
        ).status_code
        == 401
    )
    # On its own connection: the gateway answers 413 without reading the body and closes the
    # connection, which a pooled keep-alive connection of `api` must not be.
    oversized = requests.post(
        f"{gw}/api/playlists",
        data=b"x" * (2 * 1024 * 1024),
        headers={**auth, "Content-Type": "application/json", "Connection": "close"},
        timeout=10,
    )
    assert oversized.status_code == 413


def scrape(platform, program):
    url = {
        "flower": platform.url("flower", "/metrics"),
        "analysis-worker": f"http://127.0.0.1:{platform.ports['analysis-worker']}/metrics",
        "playlist-relay": f"http://127.0.0.1:{platform.ports['playlist-relay']}/metrics",
    }.get(program) or platform.url(program, "/metrics")
    response = requests.get(url, timeout=10)
    assert response.status_code == 200, f"{program}: {response.status_code}"
    return response.text


def test_every_dashboard_and_alert_metric_is_exposed(platform, api, user):
    make_traffic(platform, api, user)
    time.sleep(3)  # the worker counts the events; Flower sees the tasks
    wanted = metric_names_by_source()
    missing = {}
    for source, programs in SCRAPED.items():
        exposition = "\n".join(scrape(platform, program) for program in programs)
        absent = missing_from(exposition, wanted.get(source, set()))
        if absent:
            missing[source] = sorted(absent)
    assert missing == {}


def test_logs_are_json_lines_without_secrets(platform, api, user):
    make_traffic(platform, api, user)
    login = api.post(
        f"{platform.gateway}/api/auth/login",
        json={"username": user["username"], "password": user["password"]},
        timeout=10,
    )
    assert login.status_code == 200
    time.sleep(2)
    log_dir = Path(platform.platform.log_dir)
    text = "".join(path.read_text(errors="replace") for path in log_dir.glob("*.log"))
    assert text, "the platform wrote no logs"
    for secret in (
        user["password"],
        user["token"],
        user["refresh"],
        login.json()["token"],
        login.json()["refresh"],
    ):
        assert secret not in text
    assert "X-User-Signature" not in text or "v1=" not in text.split("X-User-Signature", 1)[1][:80]
    # Application log lines (gunicorn's own start-up lines aside) are JSON with the context.
    records = []
    for line in text.splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
    assert records
    assert {"time", "level", "service", "logger", "message", "request_id"} <= set(records[-1])
    assert any(r.get("request_id") and r.get("user_id") == user["id"] for r in records)
