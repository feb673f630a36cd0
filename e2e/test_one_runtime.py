"""The production process layout, attacked: relays killed mid-burst, revocations under pressure.

The platform runs as `manage_all.py up` runs it: several gunicorn workers per service, the
playlist outbox relay as its own process (the only publisher of playlist events) and the
playlist Celery worker consuming UserDeleted.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

import pytest
import redis
import requests
from conftest import settle

pytestmark = pytest.mark.e2e


def bearer(user):
    return {"Authorization": f"Bearer {user['token']}"}


@pytest.mark.parametrize("relay", ["playlist-relay", "auth-relay"])
def test_a_relay_killed_during_a_burst_of_writes_loses_and_doubles_nothing(
    platform, api, user, relay
):
    gw, auth = platform.gateway, bearer(user)
    created, plays, errors = [], [], []
    stop = threading.Event()

    def writer():
        session = requests.Session()
        while not stop.is_set() and len(created) < 60:
            response = session.post(
                f"{gw}/api/playlists",
                json={"name": f"burst {len(created)}", "tracks": [{"title": "t", "genre": "jazz"}]},
                headers=auth,
                timeout=10,
            )
            if response.status_code != 201:
                errors.append(response.status_code)
                continue
            created.append(response.json()["id"])
            played = session.post(
                f"{gw}/api/playlists/{created[-1]}/plays",
                json={"track": 0},
                headers=auth,
                timeout=10,
            )
            if played.status_code == 202:
                plays.append(created[-1])
            else:
                errors.append(played.status_code)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while len(created) < 15 and thread.is_alive():
            time.sleep(0.05)
        platform.platform.kill(relay)  # SIGKILL, mid-batch as far as timing allows
        time.sleep(1.0)  # writes go on while no relay runs: their events wait in the outbox
        assert platform.platform.restart_dead() == [f"{relay} (exit code -9)"]
    finally:
        thread.join(60)
        stop.set()
    assert errors == []
    assert len(created) == 60

    def counts():
        body = api.get(f"{gw}/api/analysis", headers=auth, timeout=10).json()
        return body["playlists_created"], body["plays"]

    settle(counts, (len(created), len(plays)))


def test_user_deleted_reaches_the_playlist_celery_worker(platform, api, user):
    gw, auth = platform.gateway, bearer(user)
    made = api.post(f"{gw}/api/playlists", json={"name": "to remove"}, headers=auth, timeout=10)
    assert made.status_code == 201
    deleted = api.delete(
        f"{gw}/api/auth/me", json={"current_password": user["password"]}, headers=auth, timeout=10
    )
    assert deleted.status_code == 204
    log = platform.platform.log_dir / "playlist-worker.log"

    def handled():
        text = log.read_text(errors="replace") if log.exists() else ""
        return user["id"] in text and "succeeded" in text

    deadline = time.monotonic() + 20
    while not handled() and time.monotonic() < deadline:
        time.sleep(0.3)
    assert handled(), "the playlist Celery worker did not log the UserDeleted task"


def test_a_revocation_survives_ten_thousand_other_cache_keys(platform, api, user):
    gw, auth = platform.gateway, bearer(user)
    assert (
        api.post(
            f"{gw}/api/auth/logout", json={"refresh": user["refresh"]}, headers=auth, timeout=10
        ).status_code
        == 204
    )
    assert api.get(f"{gw}/api/auth/me", headers=auth, timeout=10).status_code == 401
    client = redis.Redis.from_url(platform.env["REDIS_URL"])
    prefix = f"{os.environ.get('CACHE_KEY_PREFIX', 'ms')}-gateway:1:pressure-{uuid.uuid4().hex}"
    keys = [f"{prefix}:{i}" for i in range(10_000)]
    try:
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.set(key, b"x" * 64, ex=300)  # as many clients' throttle windows would
        pipe.execute()
        for _ in range(4):  # both gateway workers
            assert api.get(f"{gw}/api/auth/me", headers=auth, timeout=10).status_code == 401
    finally:
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
        client.close()
