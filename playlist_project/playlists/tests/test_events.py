"""Events reach the real RabbitMQ: one envelope per write, none lost when the broker is down."""

from __future__ import annotations

import socket
import threading

import pytest

from common.events import (
    ANALYSIS_QUEUE,
    ANALYSIS_TASK,
    PLAYLIST_CREATED,
    PLAYLIST_DELETED,
    PLAYLIST_UPDATED,
    TRACK_PLAYED,
    validate_envelope,
)
from playlists import services
from playlists.documents import Playlist
from playlists.outbox import PlaylistOutboxStore
from playlists.runtime import build_relay, runtime
from playlists.tests.conftest import pending_envelopes, wait_for
from playlists.tests.tcp_proxy import BlackHole, TcpProxy

pytestmark = pytest.mark.integration


def outbox_empty() -> bool:
    return not pending_envelopes()


def test_each_operation_publishes_exactly_one_envelope(alice, make_playlist, queues, amqp_url):
    runtime.start(inprocess=False, broker_url=amqp_url)
    created = make_playlist()
    path = f"/api/playlists/{created['id']}"
    steps = [
        (
            PLAYLIST_CREATED,
            None,
            {"playlist_id": created["id"], "name": "Road trip", "track_count": 2},
        ),
        (
            PLAYLIST_UPDATED,
            lambda: alice.put(
                path, {"name": "Put", "tracks": ["x"]}, headers={"X-Request-ID": "req-put"}
            ),
            {"playlist_id": created["id"], "name": "Put", "track_count": 1},
        ),
        (
            PLAYLIST_UPDATED,
            lambda: alice.patch(path, {"tracks": ["a", {"title": "b", "genre": "Jazz"}]}),
            {"playlist_id": created["id"], "name": "Put", "track_count": 2},
        ),
        (
            TRACK_PLAYED,
            lambda: alice.post(f"{path}/plays", {"track": 1}),
            {
                "playlist_id": created["id"],
                "track_index": 1,
                "title": "b",
                "artist": None,
                "genre": "jazz",
            },
        ),
        (
            PLAYLIST_DELETED,
            lambda: alice.delete(path),
            {"playlist_id": created["id"], "track_count": 2, "genres": ["jazz"]},
        ),
    ]
    seen = set()
    for event_type, action, data in steps:
        if action is not None:
            response = action()
            assert response.status_code < 300, response.content
        [message] = queues.take_until(1)
        envelope = validate_envelope(message["envelope"])
        assert message["task"] == ANALYSIS_TASK
        assert message["delivery_mode"] == 2  # persistent
        assert envelope["type"] == event_type
        assert envelope["user_id"] == alice.user_id
        assert envelope["request_id"]
        assert envelope["data"] == data
        assert message["headers"]["event_id"] == envelope["event_id"]
        assert envelope["event_id"] not in seen
        seen.add(envelope["event_id"])
        wait_for(outbox_empty)
    # The tombstone went away with its last event.
    wait_for(lambda: Playlist._get_collection().count_documents({}) == 0)
    assert queues.take() == []


def test_request_id_reaches_the_envelope(alice, queues, amqp_url):
    runtime.start(inprocess=False, broker_url=amqp_url)
    response = alice.post("/api/playlists", {"name": "x"}, headers={"X-Request-ID": "abc-123"})
    assert response.status_code == 201
    [message] = queues.take_until(1)
    assert message["envelope"]["request_id"] == "abc-123"
    assert message["headers"]["request_id"] == "abc-123"


def test_broker_down_then_back_delivers_every_event(alice, queues, amqp_url, settings):
    settings.PLAYLIST_RELAY_INTERVAL = 0.2
    host_port = amqp_url.split("@", 1)[1].split("/", 1)[0]
    proxy = TcpProxy(host_port.split(":")[0], int(host_port.split(":")[1])).start()
    try:
        runtime.start(inprocess=True, broker_url=proxy.url(amqp_url), grace_seconds=0)
        first = alice.post("/api/playlists", {"name": "before the outage"})
        assert first.status_code == 201
        queues.take_until(1)
        wait_for(outbox_empty)

        proxy.stop()  # the broker is gone: nothing listens on the relay's port any more
        written = []
        for index in range(5):
            response = alice.post("/api/playlists", {"name": f"during {index}"})
            assert response.status_code == 201
            written.append(response.json()["id"])
        assert (
            alice.post(f"/api/playlists/{written[0]}/plays", {"track": 0}).status_code == 400
        )  # no tracks: nothing written for it
        assert alice.delete(f"/api/playlists/{written[1]}").status_code == 204
        pending = pending_envelopes()
        assert len(pending) == 6
        assert queues.take() == []

        proxy.start()  # the broker is back on the same port
        delivered = queues.take_until(len(pending), timeout=60)
        ids = [message["envelope"]["event_id"] for message in delivered]
        # Exactly the events written, none missing (a duplicate would be allowed).
        assert set(ids) == {envelope["event_id"] for envelope in pending}
        wait_for(outbox_empty)
    finally:
        runtime.stop()
        proxy.stop()


def test_create_answers_at_once_when_the_broker_hangs(alice, settings):
    hole = BlackHole()
    settings.PLAYLIST_PUBLISH_TIMEOUT = 1.0
    try:
        runtime.start(inprocess=False, broker_url=f"amqp://guest:guest@127.0.0.1:{hole.port}//")
        responses = []
        thread = threading.Thread(
            target=lambda: responses.append(alice.post("/api/playlists", {"name": "x"}))
        )
        thread.start()
        thread.join(timeout=10)  # a generous bound: the request path never waits on a broker
        assert not thread.is_alive()
        assert responses[0].status_code == 201
        assert len(pending_envelopes()) == 1
    finally:
        runtime.stop()
        hole.close()


def test_a_hung_broker_fails_the_publish_within_bounds(settings):
    settings.PLAYLIST_PUBLISH_TIMEOUT = 1.0
    hole = BlackHole()
    try:
        relay = build_relay(
            full=True, broker_url=f"amqp://guest:guest@127.0.0.1:{hole.port}//", grace_seconds=0
        )
        from common.events import make_envelope

        results: list[bool] = []
        thread = threading.Thread(
            target=lambda: results.append(
                relay.publish(make_envelope(PLAYLIST_CREATED, user_id="u", data={}))
            )
        )
        thread.start()
        thread.join(timeout=30)
        assert not thread.is_alive()
        assert results == [False]
    finally:
        hole.close()


def test_a_crash_between_write_and_publish_loses_nothing(alice, make_playlist, queues, amqp_url):
    # No publisher runs: the process "died" right after each write answered 2xx.
    created = make_playlist()
    alice.post(f"/api/playlists/{created['id']}/plays", {"track": 0})
    alice.delete(f"/api/playlists/{created['id']}")
    written = [envelope["event_id"] for envelope in pending_envelopes()]
    assert len(written) == 3
    assert queues.take() == []

    fresh = build_relay(full=True, broker_url=amqp_url, grace_seconds=0)
    assert fresh.run_once() == (3, "drained")
    delivered = queues.take_until(3)
    assert [m["envelope"]["event_id"] for m in delivered] == written
    assert outbox_empty()
    assert Playlist._get_collection().count_documents({}) == 0


def test_a_crash_after_publish_before_forgetting_publishes_again(
    alice, make_playlist, queues, amqp_url, monkeypatch
):
    make_playlist()
    [envelope] = pending_envelopes()
    relay = build_relay(full=True, broker_url=amqp_url, grace_seconds=0)

    def crash(**_):
        raise RuntimeError("process died before $pull")

    monkeypatch.setattr(relay.store, "mark_published", crash)
    with pytest.raises(RuntimeError):
        relay.run_once()
    assert pending_envelopes() == [envelope]  # never zero times...
    monkeypatch.undo()
    fresh = build_relay(full=True, broker_url=amqp_url, grace_seconds=0)
    assert fresh.run_once() == (1, "drained")
    delivered = queues.take_until(2)
    # ...at worst twice, with one event_id the consumers dedupe on.
    assert [m["envelope"]["event_id"] for m in delivered] == [envelope["event_id"]] * 2
    assert outbox_empty()


def test_relay_grace_leaves_fresh_events_to_the_writer(alice, make_playlist, amqp_url, queues):
    make_playlist()
    relay = build_relay(full=True, broker_url=amqp_url, grace_seconds=3600)
    assert relay.run_once() == (0, "drained")
    assert len(PlaylistOutboxStore().pending(limit=10, older_than_seconds=0)) == 1
    assert queues.take() == []
    assert ANALYSIS_QUEUE.name == "analysis.events"


def test_failed_immediate_publishes_are_left_to_the_outbox(alice, settings):
    """A dead broker: the publisher thread drops its copies; every event stays in the outbox."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    relay = build_relay(full=False, broker_url=f"amqp://guest:guest@127.0.0.1:{closed}//")
    for index in range(3):
        services.playlist_create(owner_id=alice.user_id, name=f"p{index}")
    for envelope in pending_envelopes():
        relay.submit(envelope)
    assert relay.run_once() == (0, "failed")
    assert relay._submitted.empty()
    assert len(pending_envelopes()) == 3


def test_web_start_failure_never_fails_requests(alice, monkeypatch):
    from playlists import runtime as runtime_module

    def broken(**_):
        raise RuntimeError("bad broker configuration")

    monkeypatch.setattr(runtime_module, "build_relay", broken)
    monkeypatch.setattr(runtime_module, "_start_failed_at", None)
    runtime_module.start_web()
    assert not runtime.running
    assert runtime_module._start_failed_at is not None
    runtime_module.start_web()  # within the retry pause: not tried again
    assert alice.post("/api/playlists", {"name": "x"}).status_code == 201
    assert len(pending_envelopes()) == 1


def test_web_process_starts_its_threads_once(settings):
    from playlists import runtime as runtime_module

    settings.PLAYLIST_INPROCESS_WORKERS = True
    runtime_module.start_web()
    try:
        assert runtime.running and runtime.consumer is not None
        relay = runtime.relay
        runtime_module.start_web()
        assert runtime.relay is relay
        assert {thread.name for thread in runtime.threads} == {
            "playlist-outbox-relay",
            "playlist-events-consumer",
        }
    finally:
        runtime.stop()
    assert not runtime.running


@pytest.mark.django_db  # Django's request_started closes old database connections
def test_the_wsgi_entry_point_starts_the_threads_on_its_first_request(settings):
    from django.test.client import RequestFactory

    from playlist_project import wsgi

    settings.PLAYLIST_INPROCESS_WORKERS = False
    assert not runtime.running
    environ = RequestFactory()._base_environ(PATH_INFO="/healthz", REQUEST_METHOD="GET")
    statuses = []
    body = b"".join(wsgi.application(environ, lambda status, headers: statuses.append(status)))
    try:
        assert statuses == ["200 OK"] and b"ok" in body
        assert runtime.running and runtime.consumer is None  # publisher thread only
    finally:
        runtime.stop()
