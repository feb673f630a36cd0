"""The outbox relay of the playlist service: the only publisher of its events.

It runs as its own process, ``python playlist_project/manage.py outbox_relay``, in every
mode (web processes publish nothing and start no threads). It scans the outbox every
``PLAYLIST_RELAY_INTERVAL`` seconds, so a new event leaves within a fraction of a second.

The relay publishes through a Celery app of its own whose broker connection has read/write
timeouts (``PLAYLIST_PUBLISH_TIMEOUT``) and no heartbeats (common.celery_utils.
make_publisher_app), so a dead or hanging broker makes a publish fail within seconds instead
of stalling the relay, and an idle connection is not dropped.
"""

from __future__ import annotations

import time
from typing import Any

from celery import Celery
from django.conf import settings

from common import celery_utils
from common.outbox import Relay
from playlists import metrics
from playlists.outbox import PlaylistOutboxStore

GAUGE_REFRESH_SECONDS = 5.0


def make_publisher_app(*, broker_url: str | None = None) -> Celery:
    """The relay's publisher: every broker wait bounded by ``PLAYLIST_PUBLISH_TIMEOUT``."""
    return celery_utils.make_publisher_app(
        "playlist-publisher", timeout=settings.PLAYLIST_PUBLISH_TIMEOUT, broker_url=broker_url
    )


class PlaylistRelay(Relay):
    """The shared relay plus metrics, and the outbox gauges refreshed every few seconds."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(on_published=self._published, on_failed=self._failed, **kwargs)
        self._measured_at = 0.0

    def _published(self, envelope: dict[str, Any]) -> None:
        metrics.EVENTS_PUBLISHED.labels(type=envelope["type"], outcome="published").inc()

    def _failed(self, envelope: dict[str, Any], exc: BaseException) -> None:
        metrics.EVENTS_PUBLISHED.labels(type=envelope["type"], outcome="failed").inc()

    def run_once(self) -> tuple[int, str]:
        try:
            return super().run_once()
        finally:
            if time.monotonic() - self._measured_at >= GAUGE_REFRESH_SECONDS:
                self._measured_at = time.monotonic()
                metrics.refresh_outbox_gauges()


def build_relay(
    *, broker_url: str | None = None, grace_seconds: float | None = None
) -> PlaylistRelay:
    """A relay over the playlist outbox, configured from the settings."""
    return PlaylistRelay(
        app=make_publisher_app(broker_url=broker_url),
        store=PlaylistOutboxStore(),
        batch_size=settings.PLAYLIST_RELAY_BATCH_SIZE,
        interval=settings.PLAYLIST_RELAY_INTERVAL,
        grace_seconds=(
            settings.PLAYLIST_RELAY_GRACE_SECONDS if grace_seconds is None else grace_seconds
        ),
    )
