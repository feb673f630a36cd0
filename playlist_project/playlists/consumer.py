"""In-process consumer of ``playlist.events`` (single machine, mongomock).

mongomock's data lives in the web process, so a separate Celery worker could not delete
anything from it. Instead the web process runs this kombu :class:`ConsumerMixin` thread on
the same queue (declared exactly as in ``common.events``), reads the Celery task messages the
publishers send (protocol 2: ``[args, kwargs, embed]``), and calls the same handler as the
Celery task (:func:`playlists.tasks.process_envelope`). With a real MongoDB the Celery
worker (``celery -A playlist_project worker -Q playlist.events``) does this instead.

Acknowledgement: after the handler succeeded. A message that is not a valid envelope is
rejected without requeue (it dead-letters to ``playlist.events.dlq`` on RabbitMQ); a failing
handler is retried a few times with a pause, then rejected the same way.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from django.conf import settings
from kombu import Connection
from kombu.mixins import ConsumerMixin
from kombu.transport.base import Message

from common.events import PLAYLIST_DLQ, PLAYLIST_QUEUE, PLAYLIST_TASK, InvalidEnvelope
from common.log_context import bound

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
RETRY_PAUSE_SECONDS = 1.0


def envelope_from_message(body: Any, headers: dict[str, Any] | None) -> Any:
    """The envelope carried by a Celery task message (protocol 2, or protocol 1)."""
    headers = headers or {}
    if isinstance(body, dict) and "task" in body:  # protocol 1
        task, args = body.get("task"), body.get("args") or []
    else:
        task = headers.get("task")
        args = body[0] if isinstance(body, list | tuple) and body else []
    if task != PLAYLIST_TASK:
        raise InvalidEnvelope(f"unexpected task {task!r} on {PLAYLIST_QUEUE.name}")
    if not isinstance(args, list | tuple) or len(args) != 1:
        raise InvalidEnvelope("the task must carry exactly one envelope argument")
    return args[0]


class PlaylistEventsConsumer(ConsumerMixin):
    """Consumes ``playlist.events`` until ``should_stop`` is set."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.attempts: dict[str, int] = {}
        self.pause = threading.Event()

    def get_consumers(self, consumer_class: Any, channel: Any) -> list[Any]:
        PLAYLIST_DLQ.bind(channel).declare()
        return [
            consumer_class(
                queues=[PLAYLIST_QUEUE],
                callbacks=[self.on_message],
                accept=["json"],
                prefetch_count=10,
            )
        ]

    def on_message(self, body: Any, message: Message) -> None:
        from playlists.tasks import process_envelope

        headers = message.headers or {}
        key = str(message.delivery_tag)
        with bound(
            request_id=headers.get("request_id") or None,
            user_id=headers.get("user_id") or None,
            event_id=headers.get("event_id") or None,
        ):
            try:
                process_envelope(envelope_from_message(body, headers))
            except InvalidEnvelope as exc:
                logger.warning("invalid message on %s dead-lettered: %s", PLAYLIST_QUEUE.name, exc)
                message.reject(requeue=False)
                return
            except Exception as exc:
                event_key = str(headers.get("event_id") or headers.get("id") or key)
                attempts = self.attempts.get(event_key, 0) + 1
                if attempts >= MAX_ATTEMPTS:
                    self.attempts.pop(event_key, None)
                    logger.error(
                        "event failed %d times, dead-lettered: %s: %s",
                        attempts,
                        type(exc).__name__,
                        exc,
                    )
                    message.reject(requeue=False)
                    return
                self.attempts[event_key] = attempts
                logger.warning(
                    "event failed (attempt %d), retried: %s: %s", attempts, type(exc).__name__, exc
                )
                self.pause.wait(RETRY_PAUSE_SECONDS * attempts)
                message.requeue()
                return
            message.ack()


def start_consumer_thread(
    *, broker_url: str | None = None
) -> tuple[PlaylistEventsConsumer, threading.Thread]:
    connection = Connection(
        broker_url or settings.CELERY_BROKER_URL,
        transport_options=settings.CELERY_BROKER_TRANSPORT_OPTIONS,
        connect_timeout=settings.CELERY_BROKER_CONNECTION_TIMEOUT,
        heartbeat=0,
    )
    consumer = PlaylistEventsConsumer(connection)
    thread = threading.Thread(target=consumer.run, name="playlist-events-consumer", daemon=True)
    thread.start()
    return consumer, thread
