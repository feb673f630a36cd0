"""The MongoDB operations the playlist service relies on, with the results MongoDB defines.

They run in every test run against the run's server (``TEST_MONGODB_URI``: SecantusDB, or the
MongoDB that MONGODB_URI named) and, when ``MONGODB_URI_CONTRACT`` names a real MongoDB, against
that one too, so that docs/mongodb-compat.md can be checked there. On a server holding other
data they touch only documents of owner ids they made up, and remove them; their events are
dated 1971, older than any real one, so the outbox answers about them are exact.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from pymongo import uri_parser

from common.events import PLAYLIST_CREATED, make_envelope
from playlists import db, selectors, services
from playlists.documents import OutboxEvent, Playlist, ensure_indexes
from playlists.exceptions import OutboxFull
from playlists.outbox import PlaylistOutboxStore, entry, utcnow
from playlists.tests.conftest import connected_to, database_name

pytestmark = pytest.mark.mongo

SERVERS = [pytest.param("TEST_MONGODB_URI", id="run-server")]
if os.environ.get("MONGODB_URI_CONTRACT"):
    SERVERS.append(pytest.param("MONGODB_URI_CONTRACT", id="mongodb-contract"))


@pytest.fixture(params=SERVERS)
def owner(request: pytest.FixtureRequest, mongodb: str) -> Iterator[str]:
    """A made-up owner id, on the server under test (the session's connection, or the other)."""
    owner = f"contract-{uuid.uuid4().hex}"
    if request.param == "TEST_MONGODB_URI":
        yield owner
        return
    uri = os.environ["MONGODB_URI_CONTRACT"]
    # The database the URI names (touched only through this owner), else one of this run.
    named = uri_parser.parse_uri(uri)["database"]
    name = named or f"{database_name()}_contract"
    with connected_to(uri, name):
        ensure_indexes()
        try:
            yield owner
        finally:
            if named:
                Playlist._get_collection().delete_many({"owner_id": owner})
                OutboxEvent._get_collection().delete_many({"owner_id": owner})
            else:
                Playlist._get_collection().database.client.drop_database(name)


def _mine(owner: str) -> list[dict]:
    return list(Playlist._get_collection().find({"owner_id": owner}))


def _ancient(second: int) -> datetime:
    return datetime(1971, 1, 1, 0, 0, second)


def _insert_with_events(owner: str, *seconds: int) -> list[str]:
    """A playlist whose outbox holds one event per second given (in that array order)."""
    envelopes = [
        make_envelope(PLAYLIST_CREATED, user_id=owner, data={"second": second})
        for second in seconds
    ]
    Playlist._get_collection().insert_one(
        {
            "owner_id": owner,
            "name": "old",
            "created_at": utcnow(),
            "updated_at": utcnow(),
            "deleted": False,
            "version": 0,
            "tracks": [],
            "pending_events": [
                entry(envelope, written_at=_ancient(second))
                for envelope, second in zip(envelopes, seconds, strict=True)
            ],
        }
    )
    return [envelope["event_id"] for envelope in envelopes]


def test_crud_play_and_outbox(owner):
    db.ping()
    store = PlaylistOutboxStore()
    playlist = services.playlist_create(
        owner_id=owner, name="a", tracks=[{"title": "t", "genre": "rock"}]
    )
    pid = str(playlist.id)
    stale = selectors.playlist_get(owner_id=owner, playlist_id=pid)
    services.playlist_update(
        owner_id=owner,
        playlist_id=pid,
        changes={"name": "b", "tracks": [{"title": "u", "genre": "pop"}]},
    )
    # A versioned update_one from a stale read matches nothing and writes nothing.
    assert not services._write_if_unchanged(stale, owner_id=owner, update={"$set": {"name": "x"}})
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
    for envelope in pending[:-1]:
        store.mark_published(event_id=envelope["event_id"])
    assert _mine(owner)[0]["deleted"] is True
    store.mark_published(event_id=pending[-1]["event_id"])
    assert _mine(owner) == []


def test_pending_scans_playlists_by_their_oldest_event(owner):
    """An ascending sort on an array field orders documents by the array's smallest value."""
    store = PlaylistOutboxStore()
    first, second = _insert_with_events(owner, 5, 1)
    third = _insert_with_events(owner, 3)[0]
    fourth, fifth = _insert_with_events(owner, 2, 9)
    # limit 2 reads the two playlists with the oldest events: (5, 1) and (2, 9).
    assert [e["event_id"] for e in store.pending(limit=2, older_than_seconds=0)] == [
        second,
        fourth,
    ]
    assert [e["event_id"] for e in store.pending(limit=4, older_than_seconds=0)] == [
        second,
        fourth,
        third,
        first,
    ]
    assert fifth


def test_stats_count_every_pending_event_and_the_oldest(owner):
    store = PlaylistOutboxStore()
    before, _ = store.stats()
    _insert_with_events(owner, 7, 4)
    _insert_with_events(owner, 6)
    count, oldest = store.stats()
    assert count == before + 3
    assert oldest == _ancient(4).replace(tzinfo=UTC).timestamp()


def test_user_deleted(owner):
    for name in ("a", "b"):
        services.playlist_create(owner_id=owner, name=name)
    doomed = services.playlist_create(owner_id=owner, name="c")
    services.playlist_delete(owner_id=owner, playlist_id=str(doomed.id))  # a tombstone
    assert services.playlists_delete_for_user(user_id=owner) == 2
    assert _mine(owner) == []


def test_outbox_cap_plays_collection_and_batch_forget(owner, settings):
    """The cap filter (an array index path with $exists), plays as inserts into ``outbox``,
    and forgetting a batch ($pull with $in, delete_many by _id $in) on ids looked up."""
    settings.PLAYLIST_OUTBOX_MAX_PER_PLAYLIST = 3
    playlist = services.playlist_create(owner_id=owner, name="a", tracks=[{"title": "t"}])
    pid = str(playlist.id)
    for name in ("b", "c"):
        services.playlist_update(owner_id=owner, playlist_id=pid, changes={"name": name})
    with pytest.raises(OutboxFull):
        services.playlist_update(owner_id=owner, playlist_id=pid, changes={"name": "d"})
    [document] = _mine(owner)
    assert document["name"] == "c" and len(document["pending_events"]) == 3
    before, _ = PlaylistOutboxStore().stats()
    played = [
        services.playlist_play(owner_id=owner, playlist_id=pid, track_index=0)["event_id"]
        for _ in range(2)
    ]
    assert PlaylistOutboxStore().stats()[0] == before + 2
    assert _mine(owner) == [document]  # plays leave the playlist untouched
    waiting = [item["event_id"] for item in document["pending_events"]]
    PlaylistOutboxStore().mark_published_many(event_ids=[*waiting[:2], *played, "unknown"])
    assert [item["event_id"] for item in _mine(owner)[0]["pending_events"]] == waiting[2:]
    assert OutboxEvent._get_collection().count_documents({"owner_id": owner}) == 0
    services.playlist_update(owner_id=owner, playlist_id=pid, changes={"name": "d"})
    services.playlist_delete(owner_id=owner, playlist_id=pid)
    # The tombstone goes with its last events, swept by delete_many with $size 0.
    rest = [item["event_id"] for item in _mine(owner)[0]["pending_events"]]
    PlaylistOutboxStore().mark_published_many(event_ids=rest)
    assert _mine(owner) == []
