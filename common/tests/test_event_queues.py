"""The event queues on the run's RabbitMQ vhost: quorum queues with a delivery limit, and the
migration of a classic queue of an earlier release (issue 13)."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator

import pytest
from kombu import Connection, Producer, Queue

from common import events
from common.testing import server_url

pytestmark = pytest.mark.integration


@pytest.fixture
def amqp() -> Iterator[Connection]:
    with Connection(server_url("amqp")) as conn:
        yield conn


@pytest.fixture
def names(amqp: Connection) -> Iterator[tuple[str, str]]:
    """A queue name and DLQ name of this test only; both (and the holding queue) deleted."""
    name = f"test.events.{uuid.uuid4().hex[:8]}"
    yield name, f"{name}.dlq"
    for queue in (name, f"{name}.dlq", f"{name}.migrating"):
        with contextlib.suppress(Exception), amqp.channel() as channel:
            channel.queue_delete(queue)


def classic_queue(name: str, dlq_name: str) -> Queue:
    """The queue as the release before quorum queues declared it."""
    return Queue(
        name,
        events.EVENTS_EXCHANGE,
        routing_key=name,
        durable=True,
        queue_arguments={
            "x-dead-letter-exchange": events.DLX_EXCHANGE.name,
            "x-dead-letter-routing-key": dlq_name,
        },
    )


def publish(conn: Connection, name: str, bodies: list[dict]) -> None:
    producer = Producer(conn.channel())
    for body in bodies:
        producer.publish(
            body,
            exchange=events.EVENTS_EXCHANGE,
            routing_key=name,
            serializer="json",
            headers={"task": "t", "id": body["n"]},
            delivery_mode=2,
        )
    producer.channel.close()


def drain(conn: Connection, queue: Queue) -> list:
    bound = queue.bind(conn.channel())
    messages = []
    while (message := bound.get(no_ack=True)) is not None:
        messages.append(message)
    bound.channel.close()
    return messages


def test_a_message_returned_past_the_limit_is_dead_lettered_by_the_broker(amqp, names):
    name, dlq_name = names
    queue, dlq = events.event_queue(name, dlq_name, delivery_limit=2)
    for declared in (queue, dlq):
        declared.bind(amqp.default_channel).declare()
    publish(amqp, name, [{"n": "1"}])
    seen = []
    for _ in range(4):  # a consumer that dies every time: its connection closes unacked
        with Connection(amqp.as_uri(include_password=True)) as dying:
            message = queue.bind(dying.default_channel).get(no_ack=False)
            seen.append(message and message.headers.get("x-delivery-count"))
    assert seen == [0, 1, 2, None]  # delivered limit + 1 times, then gone
    dead = drain(amqp, dlq)
    assert [message.payload for message in dead] == [{"n": "1"}]
    assert dead[0].headers["x-first-death-reason"] == "delivery_limit"


def test_a_classic_queue_with_messages_is_migrated_to_a_quorum_queue(amqp, names):
    name, dlq_name = names
    old = classic_queue(name, dlq_name)
    old.bind(amqp.default_channel).declare()
    bodies = [{"n": str(n)} for n in range(300)]
    publish(amqp, name, bodies)
    queue, _ = events.event_queue(name, dlq_name, delivery_limit=3)
    # The new declaration is refused while the classic queue exists.
    with pytest.raises(Exception, match="PRECONDITION_FAILED"), amqp.channel() as channel:
        queue.bind(channel).declare()

    # At least once: a copy confirmed twice (seen once in a CI run, 316 for 300, cause not
    # found) is absorbed by the consumers' event_id dedupe; none may be missing.
    moved = events.migrate_queue(amqp, queue)
    assert moved >= 300

    # Now a quorum queue with the new arguments (the old declaration is refused) ...
    with pytest.raises(Exception, match="PRECONDITION_FAILED"), amqp.channel() as channel:
        old.bind(channel).declare()
    queue.bind(amqp.default_channel).declare()
    # ... bound to the events exchange, with every message, in order, headers kept.
    publish(amqp, name, [{"n": "after"}])
    messages = drain(amqp, queue)
    assert len(messages) == moved + 1
    firsts = list(dict.fromkeys(m.payload["n"] for m in messages))
    assert firsts == [*(body["n"] for body in bodies), "after"]
    assert messages[0].headers["id"] == "0"
    assert messages[0].properties["delivery_mode"] == 2
    # Nothing left behind; running it again has nothing to do.
    assert events.migrate_queue(amqp, queue) == 0
    with pytest.raises(Exception, match="NOT_FOUND"), amqp.channel() as channel:
        channel.queue_declare(f"{name}.migrating", passive=True)


def test_events_published_during_the_migration_are_all_kept(amqp, names):
    name, dlq_name = names
    classic_queue(name, dlq_name).bind(amqp.default_channel).declare()
    publish(amqp, name, [{"n": f"old-{n}"} for n in range(500)])
    queue, _ = events.event_queue(name, dlq_name)
    stop = threading.Event()
    sent: list[str] = []

    def publisher() -> None:
        # A steady stream (a few hundred a second, bounded) for the whole migration.
        with Connection(amqp.as_uri(include_password=True)) as conn:
            producer = Producer(conn.channel())
            while (not stop.is_set() or len(sent) < 50) and len(sent) < 20000:
                body = {"n": f"new-{len(sent)}"}
                producer.publish(body, exchange=events.EVENTS_EXCHANGE, routing_key=name)
                sent.append(body["n"])
                stop.wait(0.003)

    thread = threading.Thread(target=publisher)
    thread.start()
    try:
        moved = events.migrate_queue(amqp, queue)
    finally:
        stop.set()
        thread.join(30)
    assert moved >= 500
    got = [m.payload["n"] for m in drain(amqp, queue)]
    # Every event is there (a few published while the new queue was bound may be twice).
    assert set(got) == {f"old-{n}" for n in range(500)} | set(sent)
    assert len(got) - len(set(got)) <= len(sent)


def test_a_queue_with_consumers_is_not_migrated(amqp, names):
    name, dlq_name = names
    old = classic_queue(name, dlq_name)
    publish_conn = Connection(amqp.as_uri(include_password=True))
    with publish_conn:
        old.bind(publish_conn.default_channel).declare()
        publish(publish_conn, name, [{"n": "1"}])
        consumer = old.bind(publish_conn.channel())
        consumer.consume(callback=lambda message: None, no_ack=False)
        queue, _ = events.event_queue(name, dlq_name)
        with pytest.raises(events.QueueMigrationError, match="1 consumer"):
            events.migrate_queue(amqp, queue)
    # The consumer is gone: now it migrates, the message kept.
    assert events.migrate_queue(amqp, queue) == 1
    assert [m.payload for m in drain(amqp, queue)] == [{"n": "1"}]


def test_only_one_migration_at_a_time(amqp, names):
    name, dlq_name = names
    queue, _ = events.event_queue(name, dlq_name)
    with amqp.channel() as channel:
        channel.queue_declare(f"{name}.migration-lock", exclusive=True, auto_delete=True)
        with (
            Connection(amqp.as_uri(include_password=True)) as other,
            pytest.raises(events.QueueMigrationError, match="another migration"),
        ):
            events.migrate_queue(other, queue)
