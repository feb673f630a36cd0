"""The same outbox and playlist operations against a real MongoDB (MONGODB_URI).

Skipped without MONGODB_URI: every other test runs on mongomock, so this suite proves that
nothing used here is a mongomock-only behaviour. It touches only documents of owner ids it
made up, and removes them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from django.conf import settings

from playlists import db, selectors, services
from playlists.documents import Playlist, ensure_indexes
from playlists.outbox import PlaylistOutboxStore
from playlists.tests.conftest import REAL_MONGODB_URI

pytestmark = [
    pytest.mark.mongo,
    pytest.mark.skipif(not REAL_MONGODB_URI, reason="MONGODB_URI is not set"),
]


@pytest.fixture
def real_mongo() -> Iterator[str]:
    settings.MONGODB_URI = REAL_MONGODB_URI
    db.reconnect()
    ensure_indexes()
    owner = f"contract-{uuid.uuid4().hex}"
    try:
        yield owner
    finally:
        Playlist._get_collection().delete_many({"owner_id": owner})
        settings.MONGODB_URI = None
        db.reconnect()


def _mine(owner: str) -> list[dict]:
    return list(Playlist._get_collection().find({"owner_id": owner}))


def test_crud_play_and_outbox_on_mongodb(real_mongo):
    owner = real_mongo
    db.ping()
    store = PlaylistOutboxStore()
    playlist = services.playlist_create(
        owner_id=owner, name="a", tracks=[{"title": "t", "genre": "rock"}]
    )
    pid = str(playlist.id)
    services.playlist_update(
        owner_id=owner,
        playlist_id=pid,
        changes={"name": "b", "tracks": [{"title": "u", "genre": "pop"}]},
    )
    services.playlist_play(owner_id=owner, playlist_id=pid, track_index=0)
    assert selectors.playlist_get(owner_id=owner, playlist_id=pid).name == "b"
    assert [p.name for p in selectors.playlist_list(owner_id=owner)] == ["b"]
    services.playlist_delete(owner_id=owner, playlist_id=pid)
    assert list(selectors.playlist_list(owner_id=owner)) == []

    pending = [e for e in store.pending(limit=1000, older_than_seconds=0) if e["user_id"] == owner]
    assert [e["type"] for e in pending] == [
        "PlaylistCreated",
        "PlaylistUpdated",
        "TrackPlayed",
        "PlaylistDeleted",
    ]
    count, oldest = store.stats()
    assert count >= 4 and oldest is not None
    for envelope in pending[:-1]:
        store.mark_published(event_id=envelope["event_id"])
    assert _mine(owner)[0]["deleted"] is True
    store.mark_published(event_id=pending[-1]["event_id"])
    assert _mine(owner) == []


def test_user_deleted_on_mongodb(real_mongo):
    owner = real_mongo
    for name in ("a", "b"):
        services.playlist_create(owner_id=owner, name=name)
    assert services.playlists_delete_for_user(user_id=owner) == 2
    assert _mine(owner) == []
