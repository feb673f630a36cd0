"""The outbox relay against the real RabbitMQ: confirmed publish, nothing lost, nothing extra."""

import io
import threading

import pytest
from celery import Celery
from django.core.management import call_command
from kombu import Connection

from common import events
from common.outbox import Relay, RelayCommand
from common.testing import server_url


class MemoryStore:
    """An outbox in a dict; the services keep theirs in PostgreSQL or MongoDB."""

    def __init__(self, envelopes):
        self.items = {e["event_id"]: e for e in envelopes}
        self.lock = threading.Lock()
        self.forgotten = []  # the event ids of each mark_published_many call

    def pending(self, *, limit, older_than_seconds):
        with self.lock:
            return list(self.items.values())[:limit]

    def mark_published(self, *, event_id):
        self.mark_published_many(event_ids=[event_id])

    def mark_published_many(self, *, event_ids):
        with self.lock:
            self.forgotten.append(list(event_ids))
            for event_id in event_ids:
                self.items.pop(event_id, None)


def make_app(url):
    app = Celery("outbox-test", set_as_current=False)
    app.conf.update(
        broker_url=url,
        broker_transport_options={"confirm_publish": True},
        broker_connection_timeout=1,
        task_serializer="json",
        accept_content=["json"],
    )
    return app


def drain(url, queue):
    """Every message on ``queue`` (declared with the shared arguments), acknowledged."""
    bodies = []
    with Connection(url) as conn:
        simple = conn.SimpleQueue(queue)
        try:
            while True:
                try:
                    message = simple.get(timeout=0.3)
                except simple.Empty:
                    break
                bodies.append((message.headers, message.payload))
                message.ack()
        finally:
            simple.close()
    return bodies


@pytest.fixture
def amqp_url():
    url = server_url("amqp")
    drain(url, events.ANALYSIS_QUEUE)
    drain(url, events.PLAYLIST_QUEUE)
    yield url
    drain(url, events.ANALYSIS_QUEUE)
    drain(url, events.PLAYLIST_QUEUE)


def envelopes(n, event_type=events.PLAYLIST_CREATED):
    return [
        events.make_envelope(event_type, user_id=f"u{i}", data={"i": i}, request_id=f"r{i}")
        for i in range(n)
    ]


def test_relay_publishes_every_event_as_a_named_task(amqp_url):
    written = envelopes(5)
    store = MemoryStore(written)
    published = []
    relay = Relay(app=make_app(amqp_url), store=store, on_published=published.append)
    assert relay.run_once() == (5, "drained")
    assert store.items == {}
    messages = drain(amqp_url, events.ANALYSIS_QUEUE)
    assert [h["task"] for h, _ in messages] == [events.ANALYSIS_TASK] * 5
    assert [body[0][0] for _, body in messages] == written
    assert {h["request_id"] for h, _ in messages} == {f"r{i}" for i in range(5)}
    assert [e["event_id"] for e in published] == [e["event_id"] for e in written]


def test_user_deleted_reaches_both_consumers(amqp_url):
    written = envelopes(1, events.USER_DELETED)
    Relay(app=make_app(amqp_url), store=MemoryStore(written)).run_once()
    assert [b[0][0] for _, b in drain(amqp_url, events.ANALYSIS_QUEUE)] == written
    playlist = drain(amqp_url, events.PLAYLIST_QUEUE)
    assert [h["task"] for h, _ in playlist] == [events.PLAYLIST_TASK]


def test_broker_down_keeps_events_until_it_is_back(amqp_url):
    written = envelopes(3)
    store = MemoryStore(written)
    failures = []
    down = Relay(
        app=make_app("amqp://guest:guest@127.0.0.1:1//"),
        store=store,
        on_failed=lambda env, exc: failures.append(env["event_id"]),
    )
    assert down.run_once() == (0, "failed")
    assert len(store.items) == 3
    assert failures == [written[0]["event_id"]]
    assert drain(amqp_url, events.ANALYSIS_QUEUE) == []
    # The broker is reachable again (the real one): every event goes out, once.
    assert Relay(app=make_app(amqp_url), store=store).run_once() == (3, "drained")
    assert [b[0][0]["event_id"] for _, b in drain(amqp_url, events.ANALYSIS_QUEUE)] == [
        e["event_id"] for e in written
    ]


def test_submit_from_a_request_returns_at_once_and_thread_publishes(amqp_url):
    store = MemoryStore([])
    relay = Relay(app=make_app(amqp_url), store=store, interval=0.2)
    stop = threading.Event()
    done = threading.Event()
    relay.on_published = lambda env: done.set()
    thread = relay.start_thread(stop)
    try:
        envelope = envelopes(1)[0]
        store.items[envelope["event_id"]] = envelope
        relay.submit(envelope)
        assert done.wait(10), "the background thread did not publish"
    finally:
        stop.set()
        relay.wake()
        thread.join(5)
    assert store.items == {}
    assert len(drain(amqp_url, events.ANALYSIS_QUEUE)) >= 1


def delivered_ids(url):
    return [body[0][0]["event_id"] for _, body in drain(url, events.ANALYSIS_QUEUE)]


def test_a_pass_forgets_its_confirmed_events_in_one_call(amqp_url):
    written = envelopes(250)
    store = MemoryStore(written)
    relay = Relay(app=make_app(amqp_url), store=store, batch_size=100)
    assert relay.run_once() == (100, "more")
    assert [len(ids) for ids in store.forgotten] == [100]
    assert relay.run_once() == (100, "more")
    assert relay.run_once() == (50, "drained")
    assert [len(ids) for ids in store.forgotten] == [100, 100, 50]
    assert [i for ids in store.forgotten for i in ids] == [e["event_id"] for e in written]
    assert store.items == {}
    assert delivered_ids(amqp_url) == [e["event_id"] for e in written]


class FailingAfter(Relay):
    """The broker refuses every publish after the first ``good`` ones."""

    def __init__(self, *, good, **kwargs):
        super().__init__(**kwargs)
        self.good = good

    def publish(self, envelope):
        if self.good <= 0:
            return False
        self.good -= 1
        return super().publish(envelope)


def test_a_failure_mid_batch_forgets_exactly_the_confirmed_ones(amqp_url):
    written = envelopes(5)
    store = MemoryStore(written)
    relay = FailingAfter(good=2, app=make_app(amqp_url), store=store)
    assert relay.run_once() == (2, "failed")
    assert store.forgotten == [[e["event_id"] for e in written[:2]]]
    assert list(store.items) == [e["event_id"] for e in written[2:]]
    assert Relay(app=make_app(amqp_url), store=store).run_once() == (3, "drained")
    assert delivered_ids(amqp_url) == [e["event_id"] for e in written]


def test_a_store_failing_to_forget_republishes_the_batch_never_drops_it(amqp_url):
    written = envelopes(3)
    store = MemoryStore(written)

    class ForgetFails(MemoryStore):
        def mark_published_many(self, *, event_ids):
            raise ConnectionError("store down after the publishes")

    failing = ForgetFails([])
    failing.items = store.items
    relay = Relay(app=make_app(amqp_url), store=failing)
    with pytest.raises(ConnectionError):
        relay.run_once()
    assert len(store.items) == 3  # confirmed by the broker, but never forgotten...
    assert Relay(app=make_app(amqp_url), store=store).run_once() == (3, "drained")
    ids = [e["event_id"] for e in written]
    assert delivered_ids(amqp_url) == ids + ids  # ...so sent again: consumers dedupe by id


def test_a_submitted_event_is_forgotten_before_the_scan_and_sent_once(amqp_url):
    written = envelopes(2)
    store = MemoryStore(written)
    relay = Relay(app=make_app(amqp_url), store=store)
    relay.submit(written[0])  # the request path hands it over; the store holds it too
    assert relay.run_once() == (2, "drained")
    assert store.forgotten == [[written[0]["event_id"]], [written[1]["event_id"]]]
    assert delivered_ids(amqp_url) == [e["event_id"] for e in written]


class OnceCommand(RelayCommand):
    """``outbox_relay`` of a service whose outbox is ``store`` (what each service's is)."""

    def __init__(self, relay):
        super().__init__()
        self.relay = relay

    def build_relay(self, *, grace_seconds=None):
        assert grace_seconds == 0  # --once takes events at any age
        return self.relay


def run_once_command(relay):
    out = io.StringIO()
    try:
        call_command(OnceCommand(relay), "--once", stdout=out)
    except SystemExit as exc:
        return exc.code, out.getvalue()
    return 0, out.getvalue()


def test_once_publishes_every_pending_batch_and_exits_0(amqp_url):
    written = envelopes(25)
    store = MemoryStore(written)
    relay = Relay(app=make_app(amqp_url), store=store, batch_size=10)
    assert run_once_command(relay) == (0, "published 25 event(s); drained\n")
    assert store.items == {}
    assert delivered_ids(amqp_url) == [e["event_id"] for e in written]


def test_once_exits_1_when_a_publish_fails_and_keeps_the_rest(amqp_url):
    written = envelopes(5)
    store = MemoryStore(written)
    relay = FailingAfter(good=2, app=make_app(amqp_url), store=store, batch_size=2)
    assert run_once_command(relay) == (1, "published 2 event(s); failed\n")
    assert list(store.items) == [e["event_id"] for e in written[2:]]


def test_once_exits_1_when_the_store_fails(amqp_url):
    class StoreDown(MemoryStore):
        def pending(self, *, limit, older_than_seconds):
            raise ConnectionError("database down")

    relay = Relay(app=make_app(amqp_url), store=StoreDown([]))
    assert run_once_command(relay) == (1, "published 0 event(s); failed\n")
