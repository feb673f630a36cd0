"""The outbox stays bounded while the broker is down, and drains in batches when it is back.

Plays wait in the ``outbox`` collection (one insert each, the playlist document untouched); a
playlist's own changes wait in its document, at most PLAYLIST_OUTBOX_MAX_PER_PLAYLIST of them
(then 503 ``outbox_full``, nothing written). See playlists/outbox.py.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import bson
import pytest
from kombu import Connection, Consumer

from common.events import ANALYSIS_QUEUE, TRACK_PLAYED
from playlists import metrics, outbox, services
from playlists.documents import OutboxEvent, Playlist
from playlists.exceptions import OUTBOX_FULL, OUTBOX_RETRY_AFTER_SECONDS, OutboxFull
from playlists.outbox import PlaylistOutboxStore
from playlists.relay import build_relay
from playlists.tests.conftest import pending_envelopes

MONGODB_DOCUMENT_LIMIT = 16 * 1024 * 1024
# A 30-minute broker outage at 10 plays/s, compressed in time: as fast as the test can play.
# The quick profile (the default, CI) plays 5 minutes of it with a smaller cap; FAULTS_LONG=true
# plays all 30 (about 5 minutes of test on 2 cores, figures in docs/reliability.md).
FULL_OUTAGE_PLAYS = 30 * 60 * 10
LONG_PROFILE = os.environ.get("FAULTS_LONG", "").lower() == "true"
OUTAGE_PLAYS = FULL_OUTAGE_PLAYS if LONG_PROFILE else 5 * 60 * 10
OUTAGE_CAP = 50 if LONG_PROFILE else 10
# Long enough that the old layout (every play pushed onto the playlist) passed 16 MB.
LONG = "x" * 200


def _document(playlist_id: Any) -> dict[str, Any]:
    found = Playlist._get_collection().find_one({"_id": playlist_id})
    assert found is not None
    return found


class CountingCollection:
    """A pymongo collection that records the name of every write it is asked for."""

    WRITES = ("insert_one", "update_one", "update_many", "delete_one", "delete_many")

    def __init__(self, real: Any, writes: list[str], name: str) -> None:
        self._real, self._writes, self._name = real, writes, name

    def __getattr__(self, attribute: str) -> Any:
        if attribute in self.WRITES:
            self._writes.append(f"{self._name}.{attribute}")
        return getattr(self._real, attribute)


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every write the outbox module sends from now on, as ``collection.method``."""
    recorded: list[str] = []
    playlists, plays = outbox.collection, outbox.events_collection
    monkeypatch.setattr(
        outbox, "collection", lambda: CountingCollection(playlists(), recorded, "playlists")
    )
    monkeypatch.setattr(
        outbox, "events_collection", lambda: CountingCollection(plays(), recorded, "outbox")
    )
    return recorded


def test_a_play_is_one_insert_into_the_outbox_collection(alice, make_playlist, writes):
    created = make_playlist()
    before = _document(bson.ObjectId(created["id"]))
    writes.clear()
    response = alice.post(f"/api/playlists/{created['id']}/plays", {"track": 1})
    assert response.status_code == 202
    assert writes == ["outbox.insert_one"]
    assert _document(bson.ObjectId(created["id"])) == before  # the playlist is untouched
    [stored] = OutboxEvent._get_collection().find({})
    assert stored["_id"] == response.json()["event_id"] == stored["envelope"]["event_id"]
    assert stored["owner_id"] == alice.user_id
    assert stored["envelope"]["type"] == TRACK_PLAYED


def test_a_full_outbox_refuses_changes_with_503_and_writes_nothing(alice, make_playlist, settings):
    settings.PLAYLIST_OUTBOX_MAX_PER_PLAYLIST = 3
    created = make_playlist()  # PlaylistCreated: 1 event waiting
    path = f"/api/playlists/{created['id']}"
    assert alice.patch(path, {"name": "two"}).status_code == 200
    assert alice.patch(path, {"name": "three"}).status_code == 200  # 3 waiting: the cap
    full = _document(bson.ObjectId(created["id"]))
    for refused in (alice.patch(path, {"name": "four"}), alice.delete(path)):
        assert refused.status_code == 503, refused.content
        assert refused.json() == {"detail": OUTBOX_FULL, "code": "outbox_full"}
        assert refused["Retry-After"] == str(OUTBOX_RETRY_AFTER_SECONDS)
    assert _document(bson.ObjectId(created["id"])) == full  # nothing half-written
    assert alice.get(path).json()["name"] == "three"
    # Plays do not count against the cap and are never refused.
    assert alice.post(f"{path}/plays", {"track": 0}).status_code == 202
    assert len(pending_envelopes()) == 4

    # The relay sent the backlog: changes are accepted again.
    store = PlaylistOutboxStore()
    store.mark_published_many(
        event_ids=[e["event_id"] for e in store.pending(limit=10, older_than_seconds=0)]
    )
    assert alice.patch(path, {"name": "four"}).status_code == 200
    assert alice.delete(path).status_code == 204


def test_a_version_conflict_at_the_cap_is_still_a_conflict_not_a_503(alice, settings):
    settings.PLAYLIST_OUTBOX_MAX_PER_PLAYLIST = 2
    playlist = services.playlist_create(owner_id=alice.user_id, name="a")
    stale = services.playlist_get(owner_id=alice.user_id, playlist_id=str(playlist.id))
    services.playlist_update(
        owner_id=alice.user_id, playlist_id=str(playlist.id), changes={"name": "b"}
    )
    # Full now, and the read is stale: the refusal names the cap (retrying cannot help).
    with pytest.raises(OutboxFull):
        services._write_if_unchanged(stale, owner_id=alice.user_id, update={"$set": {"x": 1}})
    settings.PLAYLIST_OUTBOX_MAX_PER_PLAYLIST = 10
    # Room again, only the version is stale: False, the caller reads again and retries.
    assert not services._write_if_unchanged(
        stale, owner_id=alice.user_id, update={"$set": {"x": 1}}
    )


def test_mark_published_many_is_one_write_per_place(alice, writes):
    kept = services.playlist_create(owner_id=alice.user_id, name="a", tracks=[{"title": "t"}])
    other = services.playlist_create(owner_id=alice.user_id, name="b", tracks=[{"title": "t"}])
    doomed = services.playlist_create(owner_id=alice.user_id, name="c")
    for playlist in (kept, other):
        services.playlist_update(
            owner_id=alice.user_id, playlist_id=str(playlist.id), changes={"name": "x"}
        )
        for _ in range(3):
            services.playlist_play(
                owner_id=alice.user_id, playlist_id=str(playlist.id), track_index=0
            )
    services.playlist_delete(owner_id=alice.user_id, playlist_id=str(doomed.id))
    store = PlaylistOutboxStore()
    pending = store.pending(limit=100, older_than_seconds=0)
    assert [e["event_id"] for e in pending] == [e["event_id"] for e in pending_envelopes()]
    assert len(pending) == 3 + 2 + 6 + 1
    writes.clear()
    store.mark_published_many(event_ids=[e["event_id"] for e in pending])
    # 12 events: one delete_many of the plays, one $pull per playlist, one tombstone sweep.
    assert sorted(writes) == sorted(
        ["outbox.delete_many"] + ["playlists.update_one"] * 3 + ["playlists.delete_many"]
    )
    assert pending_envelopes() == []
    assert _document(kept.id)["pending_events"] == []
    assert Playlist._get_collection().count_documents({"_id": doomed.id}) == 0  # tombstone gone
    assert Playlist._get_collection().count_documents({}) == 2


def test_mark_published_many_finds_events_it_did_not_list(alice):
    """Ids from another relay's scan (or a crash before forgetting): looked up, then forgotten;
    unknown and already forgotten ids are ignored."""
    playlist = services.playlist_create(owner_id=alice.user_id, name="a", tracks=[{"title": "t"}])
    played = services.playlist_play(
        owner_id=alice.user_id, playlist_id=str(playlist.id), track_index=0
    )
    services.playlist_update(
        owner_id=alice.user_id, playlist_id=str(playlist.id), changes={"name": "b"}
    )
    created, _, updated = pending_envelopes()
    PlaylistOutboxStore().mark_published_many(
        event_ids=[created["event_id"], played["event_id"], "unknown", created["event_id"]]
    )
    assert pending_envelopes() == [updated]
    PlaylistOutboxStore().mark_published_many(event_ids=[played["event_id"]])  # again: no-op
    assert pending_envelopes() == [updated]


def test_pending_merges_both_places_oldest_first_up_to_the_limit(alice):
    playlist = services.playlist_create(owner_id=alice.user_id, name="a", tracks=[{"title": "t"}])
    written = [pending_envelopes()[0]]
    time.sleep(0.002)
    for step in range(3):
        written.append(
            services.playlist_play(
                owner_id=alice.user_id, playlist_id=str(playlist.id), track_index=0
            )
        )
        time.sleep(0.002)  # distinct milliseconds: the order is then fully defined
        services.playlist_update(
            owner_id=alice.user_id, playlist_id=str(playlist.id), changes={"name": f"n{step}"}
        )
        written.append(pending_envelopes()[-1])
        time.sleep(0.002)
    ids = [e["event_id"] for e in written]
    store = PlaylistOutboxStore()
    assert [e["event_id"] for e in store.pending(limit=100, older_than_seconds=0)] == ids
    assert [e["event_id"] for e in store.pending(limit=4, older_than_seconds=0)] == ids[:4]
    assert store.pending(limit=100, older_than_seconds=3600) == []


def test_gauges_count_both_places(alice):
    playlist = services.playlist_create(owner_id=alice.user_id, name="a", tracks=[{"title": "t"}])
    for _ in range(4):
        services.playlist_play(owner_id=alice.user_id, playlist_id=str(playlist.id), track_index=0)
    assert metrics.refresh_outbox_gauges()
    assert metrics.OUTBOX_PENDING._value.get() == 5
    count, oldest = PlaylistOutboxStore().stats()
    assert count == 5 and oldest is not None
    # Only plays waiting: the gauge still sees them.
    Playlist._get_collection().update_many({}, {"$set": {"pending_events": []}})
    assert PlaylistOutboxStore().stats()[0] == 4
    OutboxEvent._get_collection().delete_many({})
    assert PlaylistOutboxStore().stats() == (0, None)


def test_user_deleted_drops_their_waiting_plays_only(alice, bob):
    for client in (alice, bob):
        playlist = services.playlist_create(
            owner_id=client.user_id, name="a", tracks=[{"title": "t"}]
        )
        services.playlist_play(owner_id=client.user_id, playlist_id=str(playlist.id), track_index=0)
    services.playlists_delete_for_user(user_id=alice.user_id)
    assert {e["user_id"] for e in pending_envelopes()} == {bob.user_id}
    assert OutboxEvent._get_collection().count_documents({"owner_id": alice.user_id}) == 0


# --------------------------------------------------------------------------- the long outage


def _closed_broker_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nobody listens once the socket is closed
    return f"amqp://guest:guest@127.0.0.1:{port}//"


def _event_ids_on(url: str, queue: Any, *, expected: int, timeout: float) -> list[str]:
    """The event_id of every message on ``queue`` (consumed), until ``expected`` arrived and
    nothing more came for 1 s, or ``timeout``."""
    seen: list[str] = []

    def on_message(body: Any, message: Any) -> None:
        args = body[0] if isinstance(body, list) else body.get("args")
        seen.append(args[0]["event_id"])
        message.ack()

    deadline = time.monotonic() + timeout
    with (
        Connection(url, connect_timeout=5) as connection,
        Consumer(
            connection, queues=[queue], callbacks=[on_message], accept=["json"], prefetch_count=500
        ),
    ):
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            try:
                connection.drain_events(timeout=0.5)
                quiet_since = time.monotonic()
            except TimeoutError:
                if len(seen) >= expected and time.monotonic() - quiet_since >= 1.0:
                    break
    return seen


class CountingStore(PlaylistOutboxStore):
    """The real store, counting the relay's calls."""

    def __init__(self) -> None:
        super().__init__()
        self.scans = 0
        self.forget_calls = 0

    def pending(self, *, limit: int, older_than_seconds: float) -> list[dict[str, Any]]:
        self.scans += 1
        return super().pending(limit=limit, older_than_seconds=older_than_seconds)

    def mark_published_many(self, *, event_ids: Any) -> None:
        self.forget_calls += 1
        super().mark_published_many(event_ids=event_ids)


@pytest.fixture
def relay_during_outage() -> Iterator[threading.Event]:
    """The relay loop running against a broker that does not answer; stopped afterwards."""
    stop = threading.Event()
    relay = build_relay(broker_url=_closed_broker_url())
    thread = relay.start_thread(stop)
    yield stop
    stop.set()
    relay.wake()
    thread.join(30)
    assert not thread.is_alive()


@pytest.mark.integration
@pytest.mark.timeout(1200)
def test_a_30_minute_broker_outage_on_one_playlist(
    alice, queues, amqp_url, settings, relay_during_outage
):
    """18,000 plays (30 min at 10/s; 3,000 in the quick profile) and a change every 100 plays on
    one playlist while the broker is unreachable: the document stays small, plays keep working,
    changes past the cap answer outbox_full with nothing written; then the relay drains every
    event, in batches."""
    settings.PLAYLIST_OUTBOX_MAX_PER_PLAYLIST = OUTAGE_CAP
    tracks = [{"title": LONG, "artist": LONG, "genre": LONG} for _ in range(3)]
    playlist = services.playlist_create(owner_id=alice.user_id, name="outage", tracks=tracks)
    pid = str(playlist.id)
    accepted = {pending_envelopes()[0]["event_id"]}
    plays = changes = refused = 0
    largest = 0
    started = time.monotonic()
    for index in range(OUTAGE_PLAYS):
        envelope = services.playlist_play(
            owner_id=alice.user_id, playlist_id=pid, track_index=index % 3
        )
        accepted.add(envelope["event_id"])
        plays += 1
        if index % 100 == 99:
            before = _document(playlist.id)
            try:
                services.playlist_update(
                    owner_id=alice.user_id, playlist_id=pid, changes={"name": f"n{index}"}
                )
            except OutboxFull:
                refused += 1
                assert _document(playlist.id) == before  # nothing half-written
            else:
                changes += 1
                accepted.add(pending_envelopes_of(playlist.id)[-1])
            largest = max(largest, len(bson.encode(_document(playlist.id))))
    load_seconds = time.monotonic() - started
    # An API call at the end of the outage: a play still answers 202, a change the 503.
    late_play = alice.post(f"/api/playlists/{pid}/plays", {"track": 0})
    assert late_play.status_code == 202
    accepted.add(late_play.json()["event_id"])
    plays += 1
    refused_api = alice.patch(f"/api/playlists/{pid}", {"name": "late"})
    assert refused_api.status_code == 503
    assert refused_api.json()["code"] == "outbox_full"

    # The cap: OUTAGE_CAP events (the creation's and OUTAGE_CAP - 1 changes).
    assert changes == OUTAGE_CAP - 1 and refused == OUTAGE_PLAYS // 100 - (OUTAGE_CAP - 1)
    assert largest < MONGODB_DOCUMENT_LIMIT / 100  # far below 16 MB (under 168 KB)
    assert len(_document(playlist.id)["pending_events"]) == OUTAGE_CAP
    assert OutboxEvent._get_collection().count_documents({}) == plays
    # What the old layout would have pushed onto this one document in 30 minutes:
    one_play = len(bson.encode({"e": [outbox.entry(envelope)]}))
    assert FULL_OUTAGE_PLAYS * one_play > MONGODB_DOCUMENT_LIMIT
    assert queues.take() == []  # nothing got through during the outage

    # The broker is back: a relay (as `manage.py outbox_relay` runs it) drains everything.
    relay_during_outage.set()
    store = CountingStore()
    relay = build_relay(broker_url=amqp_url)
    relay.store = store
    started = time.monotonic()
    published = 0
    while True:
        count, state = relay.run_once()
        published += count
        assert state != "failed"
        if state == "drained":
            break
    drain_seconds = time.monotonic() - started
    assert pending_envelopes() == []

    delivered = _event_ids_on(amqp_url, ANALYSIS_QUEUE, expected=len(accepted), timeout=300)
    assert set(delivered) == accepted  # none lost, none made up
    assert len(set(delivered)) == len(accepted) == plays + changes + 1
    assert published == len(delivered)
    assert store.forget_calls <= len(accepted) / settings.PLAYLIST_RELAY_BATCH_SIZE + 2
    print(
        f"\noutage: {plays} plays + {changes} changes accepted, {refused + 1} changes refused "
        f"(outbox_full) in {load_seconds:.1f} s; playlist document at most {largest} bytes "
        f"(the old layout: {plays * one_play / 1e6:.1f} MB of plays in it)\n"
        f"drain: {len(accepted)} events in {drain_seconds:.1f} s "
        f"({len(accepted) / drain_seconds:.0f} events/s), {store.scans} scans, "
        f"{store.forget_calls} forget calls (batch {settings.PLAYLIST_RELAY_BATCH_SIZE}); "
        f"{len(delivered)} messages, {len(delivered) - len(set(delivered))} duplicates"
    )


def pending_envelopes_of(playlist_id: Any) -> list[str]:
    """The event ids waiting in one playlist's document, in order."""
    return [item["event_id"] for item in _document(playlist_id).get("pending_events") or []]
