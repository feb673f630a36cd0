"""The event envelope, event types, task names and queues every publisher and consumer shares.

Publishers send events as Celery tasks *by name* (``send_task``) so they never import the
consumer's code; consumers are idempotent by ``event_id``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from kombu import Exchange, Queue

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


def _queue_with_dlq(name: str, dlq_name: str) -> tuple[Queue, Queue]:
    # Every declaration of a queue must carry the same arguments, or RabbitMQ refuses it
    # (PRECONDITION_FAILED): publishers and consumers both take them from here.
    queue = Queue(
        name,
        EVENTS_EXCHANGE,
        routing_key=name,
        durable=True,
        queue_arguments={
            "x-dead-letter-exchange": DLX_EXCHANGE.name,
            "x-dead-letter-routing-key": dlq_name,
        },
    )
    dlq = Queue(dlq_name, DLX_EXCHANGE, routing_key=dlq_name, durable=True)
    return queue, dlq


ANALYSIS_QUEUE, ANALYSIS_DLQ = _queue_with_dlq(ANALYSIS_QUEUE_NAME, ANALYSIS_DLQ_NAME)
PLAYLIST_QUEUE, PLAYLIST_DLQ = _queue_with_dlq(PLAYLIST_QUEUE_NAME, PLAYLIST_DLQ_NAME)

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
