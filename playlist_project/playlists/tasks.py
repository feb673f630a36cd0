"""The UserDeleted consumer: a Celery task (``celery -A playlist_project worker -Q
playlist.events``)."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task, signals
from celery.exceptions import Reject
from pymongo.errors import PyMongoError

from common.events import PLAYLIST_DLQ, PLAYLIST_TASK, InvalidEnvelope, validate_envelope
from playlists import db, services

logger = logging.getLogger(__name__)


@shared_task(
    name=PLAYLIST_TASK,
    bind=True,
    acks_late=True,
    autoretry_for=(PyMongoError, ConnectionError, TimeoutError),
    retry_backoff=True,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=8,
)
def handle_event(self: Any, envelope: Any) -> None:
    try:
        services.event_handle(envelope=validate_envelope(envelope))
    except InvalidEnvelope as exc:
        logger.warning("invalid event dead-lettered: %s", exc)
        raise Reject(str(exc), requeue=False) from exc


@signals.worker_ready.connect
def _declare_dead_letter_queue(sender: Any = None, **_: Any) -> None:
    """The worker declares playlist.events itself; its DLQ must exist for rejects to land."""
    app = getattr(sender, "app", None)
    if app is None:
        return
    with app.connection_for_write() as connection:
        PLAYLIST_DLQ.bind(connection.default_channel).declare()


@signals.worker_process_init.connect
def _own_mongodb_client(**_: Any) -> None:
    """A prefork child opens its own MongoClient: the parent's one is not fork-safe."""
    db.disconnect()
