"""UserDeleted removes that user's playlists and nobody else's (the ``playlist.events`` task,
in-process and through a real Celery worker)."""

from __future__ import annotations

import pytest
from celery.exceptions import Reject
from kombu import Connection

from common.celery_utils import publish_envelope
from common.events import (
    PLAYLIST_CREATED,
    PLAYLIST_DLQ,
    PLAYLIST_QUEUE,
    USER_DELETED,
    make_envelope,
)
from playlists import services, tasks
from playlists.documents import DeletedUser, OutboxEvent, Playlist
from playlists.exceptions import ACCOUNT_DELETED
from playlists.relay import make_publisher_app
from playlists.tests.conftest import wait_for


def count(owner_id: str) -> int:
    return Playlist._get_collection().count_documents({"owner_id": owner_id})


@pytest.fixture
def two_users(alice, bob, make_playlist):
    for _ in range(3):
        make_playlist(alice)
    make_playlist(bob)
    doomed = make_playlist(alice)
    alice.delete(f"/api/playlists/{doomed['id']}")  # a tombstone with a pending event
    assert count(alice.user_id) == 4 and count(bob.user_id) == 1


def test_service_removes_only_that_user(alice, bob, two_users):
    assert services.playlists_delete_for_user(user_id=alice.user_id) == 3
    assert count(alice.user_id) == 0
    assert count(bob.user_id) == 1
    assert alice.get("/api/playlists").json()["count"] == 0
    assert bob.get("/api/playlists").json()["count"] == 1
    # Idempotent: a redelivered UserDeleted changes nothing more.
    assert services.playlists_delete_for_user(user_id=alice.user_id) == 0
    assert count(bob.user_id) == 1


def test_celery_task_handles_user_deleted(alice, bob, two_users):
    envelope = make_envelope(USER_DELETED, user_id=alice.user_id, data={"user_id": alice.user_id})
    tasks.handle_event.apply(args=[envelope]).get()
    assert count(alice.user_id) == 0
    assert count(bob.user_id) == 1


def test_other_event_types_are_ignored(alice, two_users):
    envelope = make_envelope(PLAYLIST_CREATED, user_id=alice.user_id, data={})
    tasks.handle_event.run(envelope)
    assert count(alice.user_id) == 4


@pytest.mark.parametrize(
    "message",
    [
        None,
        "x",
        {"type": USER_DELETED},
        {**make_envelope(USER_DELETED, user_id="u", data={}), "event_id": "not-a-uuid"},
    ],
)
def test_invalid_envelopes_are_rejected_for_the_dead_letter_queue(message):
    with pytest.raises(Reject):
        tasks.handle_event.run(message)


@pytest.mark.integration
def test_user_deleted_through_a_celery_worker(alice, bob, two_users, amqp_url, start_process):
    """The production path: RabbitMQ, ``celery -A playlist_project worker -Q playlist.events``."""
    worker = start_process("worker")
    envelope = make_envelope(
        USER_DELETED, user_id=alice.user_id, request_id="req-del", data={"user_id": alice.user_id}
    )
    publish_envelope(make_publisher_app(broker_url=amqp_url), envelope)
    wait_for(lambda: count(alice.user_id) == 0)
    assert count(bob.user_id) == 1
    assert bob.get("/api/playlists").json()["count"] == 1
    wait_for(lambda: "req-del" in worker.log())  # the request id reached the worker's log lines
    assert "MongoClient opened before fork" not in worker.log()  # the child has its own


@pytest.mark.integration
def test_a_poison_message_lands_in_the_dead_letter_queue(amqp_url, queues, start_process):
    start_process("worker")
    with Connection(amqp_url) as connection:
        producer = connection.Producer()
        producer.publish(
            [["not an envelope"], {}, {}],
            exchange=PLAYLIST_QUEUE.exchange,
            routing_key=PLAYLIST_QUEUE.routing_key,
            declare=[PLAYLIST_QUEUE],
            serializer="json",
            headers={"task": "playlist.handle_event", "id": "poison-1"},
        )
    [dead] = queues.take_until(1, queue=PLAYLIST_DLQ)
    assert dead["envelope"] == "not an envelope"
    assert queues.channel.queue_declare(PLAYLIST_QUEUE.name, passive=True).message_count == 0


def test_a_deleted_account_writes_nothing_more(alice, bob, make_playlist):
    """A request of a deleted account still on its way (it passed the gateway before the
    deletion): every write is 401 account_deleted and leaves nothing behind; reads answer."""
    kept = make_playlist(bob)
    services.event_handle(
        envelope=make_envelope(USER_DELETED, user_id=alice.user_id, data={"user_id": alice.user_id})
    )
    attempts = [
        alice.post("/api/playlists", {"name": "after"}),
        alice.put(f"/api/playlists/{kept['id']}", {"name": "x", "tracks": []}),
        alice.patch(f"/api/playlists/{kept['id']}", {"name": "x"}),
        alice.delete(f"/api/playlists/{kept['id']}"),
        alice.post(f"/api/playlists/{kept['id']}/plays", {"track": 0}),
    ]
    for response in attempts:
        assert response.status_code == 401, response.content
        assert response.json() == {"detail": ACCOUNT_DELETED, "code": "account_deleted"}
    assert count(alice.user_id) == 0
    assert OutboxEvent._get_collection().count_documents({"owner_id": alice.user_id}) == 0
    listed = alice.get("/api/playlists")
    assert listed.status_code == 200 and listed.json()["count"] == 0
    assert bob.post("/api/playlists", {"name": "still mine"}).status_code == 201


def test_a_create_racing_with_the_deletion_is_taken_back(alice, monkeypatch):
    """The create passed the permission check, then the deletion ran before its insert: the
    create finds the tombstone after inserting, removes its playlist and answers 401."""
    from playlists import accounts

    real_check = accounts.account_check

    def deletion_in_between(*, user_id: str) -> None:
        real_check(user_id=user_id)
        services.playlists_delete_for_user(user_id=user_id)

    monkeypatch.setattr(accounts, "account_check", deletion_in_between)
    response = alice.post("/api/playlists", {"name": "racing"})
    assert response.status_code == 401
    assert response.json()["code"] == "account_deleted"
    assert count(alice.user_id) == 0


def test_the_tombstone_is_written_once(alice):
    services.playlists_delete_for_user(user_id=alice.user_id)
    first = DeletedUser._get_collection().find_one({"_id": alice.user_id})
    services.playlists_delete_for_user(user_id=alice.user_id)  # a redelivered UserDeleted
    assert DeletedUser._get_collection().find_one({"_id": alice.user_id}) == first
