"""The auth service's outbox: an ORM store for common.outbox.Relay and the per-process relay.

``submit()`` is what the request path calls after commit: it hands the envelope to a relay
thread of this process and returns at once, never waiting on the broker. Whatever that thread
cannot publish stays in the table; the ``outbox_relay`` process publishes it later.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from celery import Celery
from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from accounts.models import OutboxEvent
from common.celery_utils import make_publisher_app
from common.outbox import ProcessRelay, Relay


class OrmOutboxStore:
    """``common.outbox.OutboxStore`` over the OutboxEvent table.

    ``recycle_connections`` makes every call drop a database connection that is broken or
    past its age first, as Django does between requests; long-lived relay loops need it.
    """

    def __init__(self, *, recycle_connections: bool = True) -> None:
        self.recycle_connections = recycle_connections

    def _recycle(self) -> None:
        if self.recycle_connections:
            close_old_connections()

    def pending(self, *, limit: int, older_than_seconds: float) -> list[dict[str, Any]]:
        self._recycle()
        cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
        rows = OutboxEvent.objects.filter(created_at__lte=cutoff).order_by("created_at", "id")
        return [row.envelope for row in rows[:limit]]

    def mark_published(self, *, event_id: str) -> None:
        self.mark_published_many(event_ids=[event_id])

    def mark_published_many(self, *, event_ids: Sequence[str]) -> None:
        """One ``DELETE ... WHERE event_id IN (...)`` for a relay pass's confirmed events."""
        self._recycle()
        OutboxEvent.objects.filter(event_id__in=list(event_ids)).delete()

    def count(self) -> int:
        return OutboxEvent.objects.count()


def celery_app(*, broker_url: str | None = None) -> Celery:
    """The relay's publisher: every broker wait bounded by ``OUTBOX_PUBLISH_TIMEOUT``, so a
    half-open broker connection fails a publish (the row stays) instead of hanging the relay."""
    return make_publisher_app(
        "auth-publisher", timeout=settings.OUTBOX_PUBLISH_TIMEOUT, broker_url=broker_url
    )


def build_relay(
    *,
    app: Celery | None = None,
    store: OrmOutboxStore | None = None,
    grace_seconds: float | None = None,
    interval: float | None = None,
    relay_class: type[Relay] = Relay,
    **kwargs: Any,
) -> Relay:
    """A Relay over the ORM store with this service's settings (each overridable)."""
    return relay_class(
        app=app or celery_app(),
        store=store or OrmOutboxStore(),
        batch_size=settings.OUTBOX_RELAY_BATCH_SIZE,
        interval=settings.OUTBOX_RELAY_INTERVAL_SECONDS if interval is None else interval,
        grace_seconds=(
            settings.OUTBOX_RELAY_GRACE_SECONDS if grace_seconds is None else grace_seconds
        ),
        max_backoff=settings.OUTBOX_RELAY_MAX_BACKOFF_SECONDS,
        **kwargs,
    )


def _thread_relay() -> Relay:
    # The web process's own thread sweeps rarely: the relay process does that.
    return build_relay(interval=max(30.0, settings.OUTBOX_RELAY_INTERVAL_SECONDS))


process_relay = ProcessRelay(_thread_relay)


def submit(envelope: dict[str, Any]) -> None:
    """Publish soon from the relay thread; never raises (the outbox row is the guarantee)."""
    process_relay.submit(envelope)
