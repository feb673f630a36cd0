"""Events reach the real RabbitMQ through the relay, the only publisher: one envelope per write,
none lost when the broker is down or a process dies; web requests never touch the broker."""

from __future__ import annotations

import signal
import socket
import threading
import time

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
from playlists.relay import build_relay
from playlists.tests.conftest import pending_envelopes, wait_for
from playlists.tests.tcp_proxy import BlackHole, TcpProxy

pytestmark = pytest.mark.integration


def outbox_empty() -> bool:
    return not pending_envelopes()


def test_each_operation_publishes_exactly_one_envelope(alice, make_playlist, queues, amqp_url):
    relay = build_relay(broker_url=amqp_url)
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
        assert relay.run_once() == (1, "drained")
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
        assert outbox_empty()
    # The tombstone went away with its last event.
    assert Playlist._get_collection().count_documents({}) == 0
    assert queues.take() == []


def test_request_id_reaches_the_envelope(alice, queues, amqp_url):
    response = alice.post("/api/playlists", {"name": "x"}, headers={"X-Request-ID": "abc-123"})
    assert response.status_code == 201
    build_relay(broker_url=amqp_url).run_once()
    [message] = queues.take_until(1)
    assert message["envelope"]["request_id"] == "abc-123"
    assert message["headers"]["request_id"] == "abc-123"


def test_broker_down_then_back_delivers_every_event(alice, queues, amqp_url, settings):
    settings.PLAYLIST_RELAY_INTERVAL = 0.2
    host_port = amqp_url.split("@", 1)[1].split("/", 1)[0]
    proxy = TcpProxy(host_port.split(":")[0], int(host_port.split(":")[1])).start()
    stop = threading.Event()
    relay = build_relay(broker_url=proxy.url(amqp_url))
    thread = relay.start_thread(stop)  # the loop of the relay process
    try:
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
        stop.set()
        relay.wake()
        thread.join(10)  # never publishes another test's events
        proxy.stop()


def test_web_requests_never_talk_to_the_broker(alice, make_playlist, monkeypatch, queues):
    """Every write answers without the broker: its event waits in the outbox for the relay."""
    from celery import Celery

    def no_broker(*args, **kwargs):
        raise AssertionError("a web request published to the broker")

    monkeypatch.setattr(Celery, "send_task", no_broker)
    created = make_playlist()
    path = f"/api/playlists/{created['id']}"
    assert alice.patch(path, {"name": "b"}).status_code == 200
    assert alice.post(f"{path}/plays", {"track": 0}).status_code == 202
    assert alice.delete(path).status_code == 204
    assert len(pending_envelopes()) == 4
    assert queues.take() == []


def test_the_web_process_starts_no_thread():
    from django.test.client import RequestFactory

    from playlist_project import wsgi

    before = {thread.ident for thread in threading.enumerate()}
    environ = RequestFactory()._base_environ(PATH_INFO="/healthz", REQUEST_METHOD="GET")
    statuses = []
    body = b"".join(wsgi.application(environ, lambda status, headers: statuses.append(status)))
    assert statuses == ["200 OK"] and b"ok" in body
    assert {thread.ident for thread in threading.enumerate()} <= before


def test_a_hung_broker_fails_the_publish_within_bounds(settings):
    settings.PLAYLIST_PUBLISH_TIMEOUT = 1.0
    hole = BlackHole()
    try:
        relay = build_relay(broker_url=f"amqp://guest:guest@127.0.0.1:{hole.port}//")
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

    fresh = build_relay(broker_url=amqp_url)
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
    relay = build_relay(broker_url=amqp_url)

    def crash(**_):
        raise RuntimeError("process died before $pull")

    monkeypatch.setattr(relay.store, "mark_published_many", crash)
    with pytest.raises(RuntimeError):
        relay.run_once()
    assert pending_envelopes() == [envelope]  # never zero times...
    monkeypatch.undo()
    fresh = build_relay(broker_url=amqp_url)
    assert fresh.run_once() == (1, "drained")
    delivered = queues.take_until(2)
    # ...at worst twice, with one event_id the consumers dedupe on.
    assert [m["envelope"]["event_id"] for m in delivered] == [envelope["event_id"]] * 2
    assert outbox_empty()


def test_relay_grace_leaves_young_events(alice, make_playlist, amqp_url, queues, settings):
    assert settings.PLAYLIST_RELAY_GRACE_SECONDS == 0  # the default: nobody else publishes
    make_playlist()
    relay = build_relay(broker_url=amqp_url, grace_seconds=3600)
    assert relay.run_once() == (0, "drained")
    assert len(PlaylistOutboxStore().pending(limit=10, older_than_seconds=0)) == 1
    assert queues.take() == []
    assert ANALYSIS_QUEUE.name == "analysis.events"


def test_a_dead_broker_leaves_every_event_in_the_outbox(alice):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    relay = build_relay(broker_url=f"amqp://guest:guest@127.0.0.1:{closed}//")
    for index in range(3):
        services.playlist_create(owner_id=alice.user_id, name=f"p{index}")
    assert relay.run_once() == (0, "failed")
    assert len(pending_envelopes()) == 3


def test_the_relay_process_publishes_new_events_at_once(alice, queues, start_process):
    """``manage.py outbox_relay`` as the launcher runs it: a write is out in well under 1 s,
    and SIGTERM stops the process cleanly."""
    relay = start_process("relay")
    delays = []
    for index in range(5):
        written = time.monotonic()
        assert alice.post("/api/playlists", {"name": f"p{index}"}).status_code == 201
        assert len(wait_for(queues.take, timeout=10, interval=0.01)) == 1
        delays.append(time.monotonic() - written)
    assert sorted(delays)[2] < 1.0, delays  # the median: scans every PLAYLIST_RELAY_INTERVAL
    wait_for(outbox_empty)
    relay.signal(signal.SIGTERM)
    assert relay.proc.wait(15) == 0
    assert "outbox relay stopped" in relay.log()
