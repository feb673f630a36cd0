"""GET answers are cached per user with ETags; writes invalidate; a dead cache only costs speed."""

from __future__ import annotations

import socket

import pytest
from bson import ObjectId

from playlists import metrics
from playlists.documents import Playlist


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_etag_and_304(alice, make_playlist):
    created = make_playlist()
    for path in ("/api/playlists", f"/api/playlists/{created['id']}"):
        first = alice.get(path)
        assert first.status_code == 200
        etag = first["ETag"]
        assert etag.startswith('"')
        assert "private" in first["Cache-Control"]
        again = alice.get(path, headers={"If-None-Match": etag})
        assert again.status_code == 304
        assert again.content == b""
        assert again["ETag"] == etag
        assert alice.get(path, headers={"If-None-Match": f'"other", W/{etag}'}).status_code == 304
        assert alice.get(path, headers={"If-None-Match": '"other"'}).status_code == 200


def _cache_then_write(client, created, write):
    """GET twice (cached), write, and check the next GET is fresh with a new ETag."""
    list_path, detail_path = "/api/playlists", f"/api/playlists/{created['id']}"
    before = {path: client.get(path) for path in (list_path, detail_path)}
    # Change the database behind the cache's back: a cached answer must not notice...
    Playlist._get_collection().update_one(
        {"_id": ObjectId(created["id"])}, {"$set": {"description": "behind the cache"}}
    )
    for path, response in before.items():
        assert client.get(path).json() == response.json()
    # ...and a write through the API makes every answer of this user fresh.
    write()
    for path, response in before.items():
        fresh = client.get(path, headers={"If-None-Match": response["ETag"]})
        assert fresh.status_code in (200, 404)
        if fresh.status_code == 200:
            assert fresh["ETag"] != response["ETag"]
            assert fresh.json() != response.json()


@pytest.mark.parametrize("operation", ["create", "put", "patch", "delete"])
def test_every_write_invalidates(alice, make_playlist, operation):
    created = make_playlist()
    path = f"/api/playlists/{created['id']}"
    writes = {
        "create": lambda: alice.post("/api/playlists", {"name": "second"}),
        "put": lambda: alice.put(path, {"name": "put"}),
        "patch": lambda: alice.patch(path, {"name": "patched"}),
        "delete": lambda: alice.delete(path),
    }
    _cache_then_write(alice, created, writes[operation])


def test_cache_is_per_user(alice, bob, make_playlist):
    make_playlist(alice)
    assert alice.get("/api/playlists").json()["count"] == 1
    assert bob.get("/api/playlists").json()["count"] == 0
    make_playlist(bob)
    assert alice.get("/api/playlists").json()["count"] == 1
    assert bob.get("/api/playlists").json()["count"] == 1


@pytest.mark.integration
def test_real_redis_caches_and_invalidates(alice, make_playlist, redis_cache_settings):
    from django.core.cache import cache

    created = make_playlist()
    assert cache.get("playlists:probe") is None
    _cache_then_write(
        alice, created, lambda: alice.patch(f"/api/playlists/{created['id']}", {"name": "renamed"})
    )
    first = alice.get("/api/playlists")
    assert alice.get("/api/playlists", headers={"If-None-Match": first["ETag"]}).status_code == 304
    client = cache.client.get_client()
    prefix = redis_cache_settings["default"]["KEY_PREFIX"]
    assert any(key.decode().startswith(prefix) for key in client.scan_iter(f"{prefix}*"))


def test_redis_down_breaks_neither_reads_nor_writes(alice, settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{_closed_port()}/0",
            "KEY_PREFIX": "unused",
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.DefaultClient",
                "SOCKET_CONNECT_TIMEOUT": 0.2,
                "SOCKET_TIMEOUT": 0.2,
            },
        }
    }
    failures = metrics.CACHE_INVALIDATION_FAILURES._value.get()
    created = alice.post("/api/playlists", {"name": "still works"})
    assert created.status_code == 201
    # The write stands; its failed invalidation is counted (common.cache's policy).
    assert metrics.CACHE_INVALIDATION_FAILURES._value.get() == failures + 1
    path = f"/api/playlists/{created.json()['id']}"
    listing = alice.get("/api/playlists")
    assert listing.status_code == 200 and listing.json()["count"] == 1
    detail = alice.get(path)
    assert detail.status_code == 200
    assert alice.get(path, headers={"If-None-Match": detail["ETag"]}).status_code == 304
    assert alice.patch(path, {"name": "changed"}).status_code == 200
    assert alice.get(path).json()["name"] == "changed"
    assert alice.delete(path).status_code == 204
