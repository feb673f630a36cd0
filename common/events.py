"""The event envelope, event types, task names and queues every publisher and consumer shares.

Publishers send events as Celery tasks *by name* (``send_task``) so they never import the
consumer's code; consumers are idempotent by ``event_id``.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from kombu import Connection, Exchange, Queue

from common.settings import env_int

logger = logging.getLogger(__name__)

ENVELOPE_VERSION = 1

PLAYLIST_CREATED = "PlaylistCreated"
PLAYLIST_UPDATED = "PlaylistUpdated"
PLAYLIST_DELETED = "PlaylistDeleted"
TRACK_PLAYED = "TrackPlayed"
USER_DELETED = "UserDeleted"
EVENT_TYPES = (PLAYLIST_CREATED, PLAYLIST_UPDATED, PLAYLIST_DELETED, TRACK_PLAYED, USER_DELETED)

# The analysis worker consumes every event type on this queue.
ANALYSIS_TASK = "analysis.handle_event"
ANALYSIS_QUEUE_NAME = "analysis.events"
ANALYSIS_DLQ_NAME = "analysis.events.dlq"
# The playlist worker consumes UserDeleted (to delete that user's playlists) on this queue.
PLAYLIST_TASK = "playlist.handle_event"
PLAYLIST_QUEUE_NAME = "playlist.events"
PLAYLIST_DLQ_NAME = "playlist.events.dlq"

EVENTS_EXCHANGE = Exchange("events", type="direct", durable=True)
DLX_EXCHANGE = Exchange("events.dlx", type="direct", durable=True)


# RabbitMQ dead-letters a message of an event queue when it was returned to the queue this
# many times (its worker died, or it hit the hard time limit): it is delivered at most
# EVENT_DELIVERY_LIMIT + 1 times, so a poison message cannot loop forever. Every process that
# declares the queues (publishers and workers) must use the same value: RabbitMQ refuses a
# declaration with other arguments (PRECONDITION_FAILED); see migrate_queue() to change it.
EVENT_DELIVERY_LIMIT = max(1, env_int("EVENT_DELIVERY_LIMIT", 5))


def event_queue(
    name: str, dlq_name: str, *, delivery_limit: int | None = None
) -> tuple[Queue, Queue]:
    """An event queue (a quorum queue with a delivery limit) and its dead-letter queue.

    Every declaration of a queue must carry the same arguments, or RabbitMQ refuses it
    (PRECONDITION_FAILED): publishers and consumers both take them from here.
    """
    queue = Queue(
        name,
        EVENTS_EXCHANGE,
        routing_key=name,
        durable=True,
        queue_arguments={
            "x-queue-type": "quorum",
            "x-delivery-limit": EVENT_DELIVERY_LIMIT if delivery_limit is None else delivery_limit,
            "x-dead-letter-exchange": DLX_EXCHANGE.name,
            "x-dead-letter-routing-key": dlq_name,
        },
    )
    dlq = Queue(dlq_name, DLX_EXCHANGE, routing_key=dlq_name, durable=True)
    return queue, dlq


ANALYSIS_QUEUE, ANALYSIS_DLQ = event_queue(ANALYSIS_QUEUE_NAME, ANALYSIS_DLQ_NAME)
PLAYLIST_QUEUE, PLAYLIST_DLQ = event_queue(PLAYLIST_QUEUE_NAME, PLAYLIST_DLQ_NAME)
EVENT_QUEUES = (ANALYSIS_QUEUE, PLAYLIST_QUEUE)


# Which consumers receive each event type: (task name, queue).
ROUTES: dict[str, tuple[tuple[str, Queue], ...]] = {
    PLAYLIST_CREATED: ((ANALYSIS_TASK, ANALYSIS_QUEUE),),
    PLAYLIST_UPDATED: ((ANALYSIS_TASK, ANALYSIS_QUEUE),),
    PLAYLIST_DELETED: ((ANALYSIS_TASK, ANALYSIS_QUEUE),),
    TRACK_PLAYED: ((ANALYSIS_TASK, ANALYSIS_QUEUE),),
    USER_DELETED: ((ANALYSIS_TASK, ANALYSIS_QUEUE), (PLAYLIST_TASK, PLAYLIST_QUEUE)),
}

REQUIRED_FIELDS = ("event_id", "type", "version", "occurred_at", "user_id", "data")


class InvalidEnvelope(ValueError):
    """A message that is not a valid event envelope (it belongs in the dead-letter queue)."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def make_envelope(
    event_type: str,
    *,
    user_id: str,
    data: dict[str, Any],
    request_id: str | None = None,
    event_id: str | None = None,
    occurred_at: str | None = None,
) -> dict[str, Any]:
    """A new envelope; ``event_id`` and ``occurred_at`` default to fresh values."""
    if event_type not in EVENT_TYPES:
        raise InvalidEnvelope(f"unknown event type {event_type!r}")
    return {
        "event_id": event_id or str(uuid.uuid4()),
        "type": event_type,
        "version": ENVELOPE_VERSION,
        "occurred_at": occurred_at or now_iso(),
        "user_id": str(user_id),
        "request_id": request_id or "",
        "data": data,
    }


def parse_occurred_at(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise InvalidEnvelope("occurred_at must carry a time zone")
    return parsed


def validate_envelope(message: Any) -> dict[str, Any]:
    """Return ``message`` if it is a well-formed envelope of a known type; else raise."""
    if not isinstance(message, dict):
        raise InvalidEnvelope("envelope must be a JSON object")
    missing = [name for name in REQUIRED_FIELDS if name not in message]
    if missing:
        raise InvalidEnvelope(f"envelope lacks {', '.join(missing)}")
    if message["type"] not in EVENT_TYPES:
        raise InvalidEnvelope(f"unknown event type {message['type']!r}")
    if message["version"] != ENVELOPE_VERSION:
        raise InvalidEnvelope(f"unsupported envelope version {message['version']!r}")
    try:
        uuid.UUID(str(message["event_id"]))
    except ValueError as exc:
        raise InvalidEnvelope("event_id must be a UUID") from exc
    if not isinstance(message["user_id"], str) or not message["user_id"]:
        raise InvalidEnvelope("user_id must be a non-empty string")
    if not isinstance(message["data"], dict):
        raise InvalidEnvelope("data must be a JSON object")
    try:
        parse_occurred_at(str(message["occurred_at"]))
    except ValueError as exc:
        raise InvalidEnvelope("occurred_at must be an ISO-8601 time") from exc
    return message


def task_headers(envelope: dict[str, Any]) -> dict[str, str]:
    """Headers that put the envelope's ids on the consumer's log lines."""
    return {
        "request_id": envelope.get("request_id") or "",
        "user_id": envelope.get("user_id") or "",
        "event_id": envelope.get("event_id") or "",
    }


# --------------------------------------------------------------------------- queue migration


class QueueMigrationError(RuntimeError):
    """The queue cannot be migrated now (another migration runs, or consumers are attached)."""


def _amqp_code(exc: BaseException) -> int | None:
    code = getattr(exc, "reply_code", None) or getattr(exc, "code", None)
    return code if isinstance(code, int) else None


@contextlib.contextmanager
def _channel(conn: Connection) -> Iterator[Any]:
    """A channel of its own for each step: a channel error (404, 406) closes only that one."""
    channel = conn.channel()
    try:
        yield channel
    finally:
        with contextlib.suppress(Exception):  # already closed by a channel error
            channel.close()


def _queue_state(conn: Connection, name: str) -> tuple[int, int] | None:
    """(messages, consumers) of queue ``name``, or None when it does not exist."""
    with _channel(conn) as channel:
        try:
            _, messages, consumers = channel.queue_declare(name, passive=True)
        except Exception as exc:
            if _amqp_code(exc) == 404:
                return None
            raise
        return int(messages), int(consumers)


def _move_messages(conn: Connection, source: str, target: str, *, prefetch: int = 1000) -> int:
    """Move the messages ``source`` holds now to ``target`` (through the default exchange).

    A message is acknowledged in ``source`` only once the broker confirmed its copy in
    ``target``: a crash leaves a copy behind, never a loss. ``source`` must have no other
    consumer and receive nothing new (it is unbound first).
    """
    state = _queue_state(conn, source)
    total = state[0] if state else 0
    if not total:
        return 0
    with _channel(conn) as channel:
        confirmed = [0]
        nacked: list[int] = []
        inbox: list[Any] = []
        received: list[int] = []  # delivery tags, in the order their copies were published

        channel.confirm_select()
        channel.events["basic_ack"].add(lambda tag, multiple: confirmed.append(tag))
        channel.events["basic_nack"].add(lambda tag, multiple: nacked.append(tag))
        channel.basic_qos(0, prefetch, False)
        channel.basic_consume(source, no_ack=False, callback=inbox.append)
        acked = 0
        while acked < total:
            if not inbox:
                conn.drain_events(timeout=30)
            while inbox:
                message = inbox.pop(0)
                properties = dict(message.properties)
                headers = dict(properties.pop("application_headers", None) or {})
                headers.pop("x-delivery-count", None)  # counted again in the new queue
                duplicate = type(message)(message.body, application_headers=headers, **properties)
                # (publishing reads what the broker sent meanwhile: more deliveries, confirms)
                channel.basic_publish(duplicate, exchange="", routing_key=target)
                received.append(message.delivery_tag)
            if nacked:
                raise QueueMigrationError(f"the broker refused a message for {target}")
            done = min(max(confirmed), len(received), total)
            if done > acked:
                channel.basic_ack(received[done - 1], multiple=True)
                acked = done
    return total


def _declare(conn: Connection, queue: Queue) -> bool:
    """Declare ``queue`` (with its exchange and binding); False if it exists with other
    arguments (PRECONDITION_FAILED)."""
    with _channel(conn) as channel:
        try:
            queue.bind(channel).declare()
        except Exception as exc:
            if _amqp_code(exc) != 406:
                raise
            return False
    return True


def _unbind_move_delete(conn: Connection, source: Queue, target: str) -> int:
    with _channel(conn) as channel:
        channel.queue_unbind(source.name, source.exchange.name, source.routing_key)
    moved = 0
    while True:
        moved += _move_messages(conn, source.name, target)
        # Quorum queues refuse queue.delete's if-empty flag: check, then delete. (A consumer
        # that a quorum queue's basic.get leaves for a moment is no worker: not checked here.)
        state = _queue_state(conn, source.name)
        if state is None:
            return moved
        if not state[0]:
            break
    with _channel(conn) as channel:
        channel.queue_delete(source.name)
    return moved


def migrate_queue(conn: Connection, queue: Queue) -> int:
    """Make ``queue`` exist with its declared arguments, moving the messages of an existing
    queue of that name declared otherwise (a classic queue of an earlier release, another
    delivery limit). Returns how many messages it moved into ``queue`` (0: nothing to
    migrate): the old queue's and those published meanwhile.

    Nothing is lost while publishers keep publishing: a holding queue bound like ``queue``
    takes new events during the move, and every message is confirmed in its new queue before
    it leaves the old one. Events published at the moment the new queue is bound may arrive
    twice (consumers are idempotent by event_id). The consumers of the old queue must be
    stopped first (QueueMigrationError otherwise); an interrupted run is finished by the next.
    """
    name = queue.name
    holding = Queue(
        f"{name}.migrating",
        queue.exchange,
        routing_key=queue.routing_key,
        durable=True,
        queue_arguments={"x-queue-type": "quorum"},
    )
    with _channel(conn) as lock:
        try:
            # Exclusive: a second migration of this queue fails here (RESOURCE_LOCKED).
            lock.queue_declare(f"{name}.migration-lock", exclusive=True, auto_delete=True)
        except Exception as exc:
            raise QueueMigrationError(f"another migration of {name} is running: {exc}") from exc
        emptied = moved = 0
        current = _declare(conn, queue)
        if not current:
            state = _queue_state(conn, name)
            if state is not None and state[1]:
                raise QueueMigrationError(
                    f"{name} has {state[1]} consumer(s): stop its workers, then migrate"
                )
            # From here on new events go to the holding queue, then the old one is emptied.
            _declare(conn, holding)
            old = Queue(name, queue.exchange, routing_key=queue.routing_key)
            emptied = _unbind_move_delete(conn, old, holding.name)
            _declare(conn, queue)
        if _queue_state(conn, holding.name) is not None:
            moved = _unbind_move_delete(conn, holding, name)
        if moved or not current:
            logger.info(
                "queue %s migrated: %d message(s) taken from the old queue, %d moved into the new",
                name,
                emptied,
                moved,
            )
        return moved
