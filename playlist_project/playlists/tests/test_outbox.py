"""The outbox store: pending scan, confirm-then-forget, tombstones, gauges, the relay command."""

from __future__ import annotations

from datetime import timedelta

import pytest
from bson import ObjectId
from django.core.management import call_command

from common.events import PLAYLIST_CREATED, make_envelope
from playlists import metrics, services
from playlists.documents import Playlist
from playlists.outbox import PlaylistOutboxStore, entry, utcnow
from playlists.tests.conftest import pending_envelopes

store = PlaylistOutboxStore()


def _doc(id_):
    return Playlist._get_collection().find_one({"_id": ObjectId(id_)})


def test_pending_is_oldest_first_across_playlists_and_respects_grace(alice):
    first = services.playlist_create(owner_id=alice.user_id, name="a", tracks=[{"title": "t"}])
    second = services.playlist_create(owner_id=alice.user_id, name="b")
    services.playlist_update(
        owner_id=alice.user_id, playlist_id=str(first.id), changes={"name": "a2"}
    )
    envelopes = store.pending(limit=10, older_than_seconds=0)
    assert [e["data"]["name"] for e in envelopes] == ["a", "b", "a2"]
    assert store.pending(limit=2, older_than_seconds=0) == envelopes[:2]
    assert store.pending(limit=10, older_than_seconds=3600) == []
    assert second.pending_events == []  # the returned document does not carry the outbox


def test_old_events_come_before_new_ones(alice):
    playlist = services.playlist_create(owner_id=alice.user_id, name="new")
    old = make_envelope(PLAYLIST_CREATED, user_id="x", data={"name": "old"})
    Playlist._get_collection().insert_one(
        {
            "owner_id": "x",
            "name": "old",
            "created_at": utcnow(),
            "updated_at": utcnow(),
            "deleted": False,
            "version": 0,
            "tracks": [],
            "pending_events": [entry(old, written_at=utcnow() - timedelta(minutes=5))],
        }
    )
    assert [e["data"]["name"] for e in store.pending(limit=10, older_than_seconds=0)] == [
        "old",
        "new",
    ]
    count, oldest = store.stats()
    assert count == 2
    assert oldest is not None
    assert playlist.id


def test_mark_published_forgets_only_that_event(alice):
    playlist = services.playlist_create(owner_id=alice.user_id, name="a")
    services.playlist_update(
        owner_id=alice.user_id, playlist_id=str(playlist.id), changes={"name": "b"}
    )
    created, updated = pending_envelopes()
    store.mark_published(event_id=created["event_id"])
    assert pending_envelopes() == [updated]
    store.mark_published(event_id=created["event_id"])  # again: harmless
    store.mark_published(event_id="unknown")
    assert pending_envelopes() == [updated]
    assert _doc(str(playlist.id))["name"] == "b"


def test_tombstone_lives_until_its_last_event_is_out(alice):
    playlist = services.playlist_create(owner_id=alice.user_id, name="a")
    services.playlist_delete(owner_id=alice.user_id, playlist_id=str(playlist.id))
    created, deleted = pending_envelopes()
    store.mark_published(event_id=deleted["event_id"])
    assert _doc(str(playlist.id))["deleted"] is True  # PlaylistCreated still pending
    store.mark_published(event_id=created["event_id"])
    assert _doc(str(playlist.id)) is None


def test_writes_on_a_vanished_playlist_are_404_and_write_nothing(alice, monkeypatch):
    playlist = services.playlist_create(owner_id=alice.user_id, name="a")
    Playlist._get_collection().delete_one({"_id": playlist.id})
    response = alice.patch(f"/api/playlists/{playlist.id}", {"name": "b"})
    assert response.status_code == 404
    assert Playlist._get_collection().count_documents({}) == 0


def test_concurrent_change_is_retried_then_conflicts(alice, monkeypatch):
    playlist = services.playlist_create(owner_id=alice.user_id, name="a", tracks=[{"title": "t"}])
    from playlists import selectors

    real_get = selectors.playlist_get
    calls = {"n": 0}

    def racing_get(**kwargs):
        found = real_get(**kwargs)
        calls["n"] += 1
        if calls["n"] <= 2:  # another writer bumps the version right after each read
            Playlist._get_collection().update_one({"_id": playlist.id}, {"$inc": {"version": 1}})
        return found

    monkeypatch.setattr(services, "playlist_get", racing_get)
    updated = services.playlist_update(
        owner_id=alice.user_id, playlist_id=str(playlist.id), changes={"name": "b"}
    )
    assert updated.name == "b" and calls["n"] == 3
    assert len(pending_envelopes()) == 2

    calls["n"] = -100
    response = alice.patch(f"/api/playlists/{playlist.id}", {"name": "c"})
    assert response.status_code == 409
    assert len(pending_envelopes()) == 2
    assert _doc(str(playlist.id))["name"] == "b"


def test_gauges_measure_the_outbox(alice, client):
    services.playlist_create(owner_id=alice.user_id, name="a")
    assert metrics.refresh_outbox_gauges()
    assert metrics.OUTBOX_PENDING._value.get() == 1
    body = client.get("/metrics").content.decode()
    assert "playlist_outbox_pending 1.0" in body
    assert "playlist_outbox_oldest_pending_age_seconds" in body
    assert 'playlist_writes_total{operation="created"}' in body
    [envelope] = pending_envelopes()
    store.mark_published(event_id=envelope["event_id"])
    body = client.get("/metrics").content.decode()
    assert "playlist_outbox_pending 0.0" in body
    assert "playlist_outbox_oldest_pending_age_seconds 0.0" in body


def test_write_counter(alice, make_playlist):
    before = metrics.PLAYLIST_WRITES.labels(operation="played")._value.get()
    created = make_playlist()
    alice.post(f"/api/playlists/{created['id']}/plays", {"track": 0})
    assert metrics.PLAYLIST_WRITES.labels(operation="played")._value.get() == before + 1


@pytest.mark.integration
def test_relay_command_once(alice, make_playlist, amqp_url, queues, settings, capsys):
    settings.CELERY_BROKER_URL = amqp_url
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"confirm_publish": True}
    make_playlist()
    make_playlist()
    call_command("outbox_relay", "--once")
    assert "published 2 event(s)" in capsys.readouterr().out
    assert len(queues.take_until(2)) == 2
    assert pending_envelopes() == []
    failed = metrics.EVENTS_PUBLISHED.labels(type=PLAYLIST_CREATED, outcome="published")
    assert failed._value.get() >= 2


def test_readyz_checks_mongodb_cache_and_broker(client):
    body = client.get("/readyz").json()
    assert set(body["checks"]) == {"mongodb", "cache", "broker"}
    assert body["status"] == "ok"


def test_readyz_reports_mongodb_down(client, monkeypatch):
    from playlists import db

    def down():
        raise ConnectionError("no MongoDB")

    monkeypatch.setattr(db, "ping", down)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["mongodb"]["ok"] is False


def test_concurrent_writers_lose_no_event(alice):
    """Threads (as in a gthread web worker) updating one playlist: one event per success."""
    import threading

    from playlists.exceptions import PlaylistConflict

    playlist = services.playlist_create(owner_id=alice.user_id, name="start")
    outcomes: list[str] = []
    lock = threading.Lock()

    def writer(index: int) -> None:
        for step in range(10):
            try:
                services.playlist_update(
                    owner_id=alice.user_id,
                    playlist_id=str(playlist.id),
                    changes={"name": f"w{index}-{step}"},
                )
                result = "ok"
            except PlaylistConflict:
                result = "conflict"
            with lock:
                outcomes.append(result)

    threads = [threading.Thread(target=writer, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    successes = outcomes.count("ok")
    assert len(outcomes) == 40 and successes >= 1
    updates = [e for e in pending_envelopes() if e["type"] == "PlaylistUpdated"]
    assert len(updates) == successes
    assert _doc(str(playlist.id))["version"] == successes
    assert _doc(str(playlist.id))["name"] == updates[-1]["data"]["name"]
