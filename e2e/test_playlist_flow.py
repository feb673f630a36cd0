"""The playlist flow through the gateway, and the analysis it feeds, on real processes.

create -> list -> get -> update -> play -> delete, then GET /api/analysis shows the counts the
events produced (published through the outbox to the real RabbitMQ, counted by the analysis
worker into PostgreSQL, read through the Redis cache).
"""

import time

import pytest
from context_auth import SignedContext

pytestmark = pytest.mark.e2e


def bearer(user):
    return {"Authorization": f"Bearer {user['token']}"}


def wait_for(predicate, timeout=15.0, interval=0.2):
    """Poll until ``predicate()`` returns a truthy value; return it (or the last falsy one)."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    return value


def test_playlist_crud_and_play_update_analysis(platform, api, user):
    gw, auth = platform.gateway, bearer(user)
    created = api.post(
        f"{gw}/api/playlists",
        json={"name": "Road trip", "tracks": ["Song 1", {"title": "Song 2", "genre": " Rock "}]},
        headers=auth,
        timeout=10,
    )
    assert created.status_code == 201, created.text
    playlist = created.json()
    assert playlist["tracks"][0] == {**playlist["tracks"][0], "title": "Song 1"}
    assert playlist["tracks"][1]["genre"] == "rock"
    pid = playlist["id"]

    listing = api.get(f"{gw}/api/playlists", headers=auth, timeout=10)
    assert listing.status_code == 200
    assert [p["id"] for p in listing.json()["results"]] == [pid]

    detail = api.get(f"{gw}/api/playlists/{pid}", headers=auth, timeout=10)
    assert detail.status_code == 200 and detail.json()["name"] == "Road trip"
    etag = detail.headers["ETag"]
    cached = api.get(
        f"{gw}/api/playlists/{pid}", headers={**auth, "If-None-Match": etag}, timeout=10
    )
    assert cached.status_code == 304

    updated = api.patch(
        f"{gw}/api/playlists/{pid}", json={"name": "Road trip 2"}, headers=auth, timeout=10
    )
    assert updated.status_code == 200 and updated.json()["name"] == "Road trip 2"
    assert (
        api.get(
            f"{gw}/api/playlists/{pid}", headers={**auth, "If-None-Match": etag}, timeout=10
        ).status_code
        == 200
    )  # the write invalidated the cached answer

    played = api.post(
        f"{gw}/api/playlists/{pid}/plays", json={"track": 1}, headers=auth, timeout=10
    )
    assert played.status_code == 202, played.text

    def analysis_shows_play():
        body = api.get(f"{gw}/api/analysis", headers=auth, timeout=10).json()
        return body if body["plays"] == 1 and body["playlists_created"] == 1 else None

    stats = wait_for(analysis_shows_play)
    assert stats, api.get(f"{gw}/api/analysis", headers=auth, timeout=10).text
    assert stats["user_id"] == user["id"]
    assert stats["playlists_active"] == 1
    assert stats["top_genres"][0]["genre"] == "rock"

    deleted = api.delete(f"{gw}/api/playlists/{pid}", headers=auth, timeout=10)
    assert deleted.status_code == 204
    assert api.get(f"{gw}/api/playlists/{pid}", headers=auth, timeout=10).status_code == 404

    def analysis_shows_delete():
        body = api.get(f"{gw}/api/analysis", headers=auth, timeout=10).json()
        return body if body["playlists_active"] == 0 else None

    assert wait_for(analysis_shows_delete)
    genres = api.get(f"{gw}/api/analysis/genres?scope=me&limit=5", headers=auth, timeout=10)
    assert genres.status_code == 200
    assert genres.json() == [{"genre": "rock", "plays": 1}]


def test_someone_elses_playlist_is_404(platform, api, user):
    gw = platform.gateway
    created = api.post(
        f"{gw}/api/playlists", json={"name": "mine"}, headers=bearer(user), timeout=10
    )
    assert created.status_code == 201
    other = api.post(
        f"{gw}/api/auth/register",
        json={"username": user["username"] + "_x", "password": user["password"]},
        timeout=10,
    ).json()
    response = api.get(
        f"{gw}/api/playlists/{created.json()['id']}",
        headers={"Authorization": f"Bearer {other['token']}"},
        timeout=10,
    )
    assert response.status_code == 404


def test_deleting_the_account_removes_playlists_and_analytics(platform, api, user):
    gw, auth = platform.gateway, bearer(user)
    assert (
        api.post(
            f"{gw}/api/playlists", json={"name": "gone soon"}, headers=auth, timeout=10
        ).status_code
        == 201
    )
    assert wait_for(
        lambda: (
            api.get(f"{gw}/api/analysis", headers=auth, timeout=10).json()["playlists_created"] == 1
        )
    )
    deleted = api.delete(
        f"{gw}/api/auth/me", json={"current_password": user["password"]}, headers=auth, timeout=10
    )
    assert deleted.status_code == 204, deleted.text
    # The old token stops working at once (revoked at the gateway).
    assert api.get(f"{gw}/api/playlists", headers=auth, timeout=10).status_code == 401

    # Reach the services directly with a context signed for the deleted user: its playlists
    # and its analytics are gone once the UserDeleted event is consumed.
    who = {"id": user["id"], "username": user["username"]}

    def user_data_removed():
        playlists = api.get(
            platform.url("playlist", "/api/playlists"),
            auth=SignedContext("playlist", who),
            timeout=10,
        ).json()
        stats = api.get(
            platform.url("analysis", "/api/analysis"),
            auth=SignedContext("analysis", who),
            timeout=10,
        ).json()
        return playlists["count"] == 0 and stats["playlists_created"] == 0

    assert wait_for(user_data_removed)


def test_pagination_links_point_at_the_gateway(platform, api, user):
    gw, auth = platform.gateway, bearer(user)
    for name in ("first", "second"):
        assert (
            api.post(
                f"{gw}/api/playlists", json={"name": name}, headers=auth, timeout=10
            ).status_code
            == 201
        )
    page = api.get(f"{gw}/api/playlists?limit=1", headers=auth, timeout=10).json()
    assert page["count"] >= 2
    assert page["next"].startswith(f"{gw}/api/playlists?"), page["next"]
