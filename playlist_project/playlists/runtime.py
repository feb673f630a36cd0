"""Background work of the playlist processes: the outbox relay and the UserDeleted consumer.

Which process runs what:

* web (gunicorn), ``PLAYLIST_INPROCESS_WORKERS`` false (a real MongoDB, the default when
  ``MONGODB_URI`` is set): one *publisher thread* that publishes the events the request path
  just wrote (:meth:`Relay.submit`). The ``outbox_relay`` process scans the outbox and the
  Celery worker (``-Q playlist.events``) consumes UserDeleted.
* web, ``PLAYLIST_INPROCESS_WORKERS`` true (the default without ``MONGODB_URI``: mongomock
  lives in this one process, nobody else can read it): the publisher thread also scans the
  outbox (a full relay), and a kombu consumer thread handles ``playlist.events``.
* tests and management commands start nothing by themselves; :func:`start_web` is called
  by ``playlist_project.wsgi`` on the first request a web process serves.

The publisher uses a Celery app of its own whose broker connection has read/write timeouts
(``PLAYLIST_PUBLISH_TIMEOUT``) and no heartbeats, so a dead or hanging broker makes a publish
fail within seconds instead of stalling the relay, and an idle connection is not dropped.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from typing import Any

from celery import Celery
from django.conf import settings

from common.outbox import OutboxStore, Relay
from playlists import metrics
from playlists.outbox import PlaylistOutboxStore, SubmittedOnlyStore

logger = logging.getLogger(__name__)

GAUGE_REFRESH_SECONDS = 5.0


def make_publisher_app(*, broker_url: str | None = None) -> Celery:
    """A Celery app for publishing only, with every broker wait bounded."""
    app = Celery("playlist-publisher", set_as_current=False)
    app.config_from_object("django.conf:settings", namespace="CELERY")
    url = broker_url or settings.CELERY_BROKER_URL
    timeout = settings.PLAYLIST_PUBLISH_TIMEOUT
    options = dict(settings.CELERY_BROKER_TRANSPORT_OPTIONS)
    if url.split("://", 1)[0] in ("amqp", "amqps", "pyamqp"):
        options.update(
            {
                "confirm_publish": True,
                "read_timeout": timeout,
                "write_timeout": timeout,
                "max_retries": 1,
            }
        )
    app.conf.update(
        broker_url=url,
        broker_transport_options=options,
        broker_connection_timeout=min(timeout, settings.CELERY_BROKER_CONNECTION_TIMEOUT),
        broker_heartbeat=0,
    )
    return app


class PlaylistRelay(Relay):
    """The shared relay plus metrics and the outbox gauges."""

    def __init__(self, *, app: Celery, store: OutboxStore, measure: bool, **kwargs: Any) -> None:
        super().__init__(
            app=app, store=store, on_published=self._published, on_failed=self._failed, **kwargs
        )
        self.measure = measure
        self._measured_at = 0.0

    def _published(self, envelope: dict[str, Any]) -> None:
        metrics.EVENTS_PUBLISHED.labels(type=envelope["type"], outcome="published").inc()

    def _failed(self, envelope: dict[str, Any], exc: BaseException) -> None:
        metrics.EVENTS_PUBLISHED.labels(type=envelope["type"], outcome="failed").inc()

    def run_once(self) -> tuple[int, str]:
        try:
            published, state = super().run_once()
            if state == "failed":
                # Every submitted event is in the outbox too: the scanning relay delivers it
                # once the broker is back. Dropping the copies here bounds memory during an
                # outage and avoids publishing each of them twice afterwards.
                self._drop_submitted()
            return published, state
        finally:
            if self.measure and time.monotonic() - self._measured_at >= GAUGE_REFRESH_SECONDS:
                self._measured_at = time.monotonic()
                metrics.refresh_outbox_gauges()

    def _drop_submitted(self) -> None:
        while True:
            try:
                self._submitted.get_nowait()
            except queue.Empty:
                return


def build_relay(
    *, full: bool, broker_url: str | None = None, grace_seconds: float | None = None
) -> PlaylistRelay:
    """A relay that scans the outbox (``full``) or only publishes what it is handed."""
    store: OutboxStore = PlaylistOutboxStore() if full else SubmittedOnlyStore()
    return PlaylistRelay(
        app=make_publisher_app(broker_url=broker_url),
        store=store,
        measure=full,
        batch_size=settings.PLAYLIST_RELAY_BATCH_SIZE,
        interval=settings.PLAYLIST_RELAY_INTERVAL,
        grace_seconds=(
            settings.PLAYLIST_RELAY_GRACE_SECONDS if grace_seconds is None else grace_seconds
        ),
    )


class Runtime:
    """The background threads of one process; started at most once per process id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.pid: int | None = None
        self.stop_event = threading.Event()
        self.relay: PlaylistRelay | None = None
        self.consumer: Any = None
        self.threads: list[threading.Thread] = []

    @property
    def running(self) -> bool:
        return self.pid == os.getpid() and self.relay is not None

    def start(
        self, *, inprocess: bool, broker_url: str | None = None, grace_seconds: float | None = None
    ) -> None:
        if self.running:  # the fast path of every request
            return
        with self._lock:
            if self.running:
                return
            self.pid = os.getpid()
            self.stop_event = threading.Event()
            self.threads = []
            try:
                self.relay = build_relay(
                    full=inprocess, broker_url=broker_url, grace_seconds=grace_seconds
                )
                self.threads.append(
                    self.relay.start_thread(self.stop_event, name="playlist-outbox-relay")
                )
                if inprocess:
                    from playlists.consumer import start_consumer_thread

                    self.consumer, thread = start_consumer_thread(broker_url=broker_url)
                    self.threads.append(thread)
            except Exception:
                self.stop_event.set()
                self.relay, self.consumer, self.pid = None, None, None
                raise
            logger.info(
                "playlist background threads started", extra={"inprocess_workers": inprocess}
            )

    def stop(self, timeout: float = 10.0) -> None:
        with self._lock:
            self.stop_event.set()
            if self.relay is not None:
                self.relay.wake()
            if self.consumer is not None:
                self.consumer.should_stop = True
            for thread in self.threads:
                thread.join(timeout)
            self.relay = None
            self.consumer = None
            self.threads = []
            self.pid = None

    def notify(self, envelope: dict[str, Any]) -> None:
        """Hand a just-written event to the publisher thread; never waits on the broker.

        Without a running publisher (tests, management commands) the event simply stays in
        the outbox for the relay.
        """
        relay = self.relay
        if relay is not None and self.pid == os.getpid():
            relay.submit(envelope)


runtime = Runtime()


START_RETRY_SECONDS = 30.0
_start_failed_at: float | None = None


def start_web() -> None:
    """What a web process runs in the background (see the module docstring).

    Never fails a request: if the threads cannot start, events wait in the outbox (for the
    relay process, or for the next attempt here, at most every ``START_RETRY_SECONDS``).
    """
    global _start_failed_at
    if runtime.running:
        return
    if _start_failed_at is not None and time.monotonic() - _start_failed_at < START_RETRY_SECONDS:
        return
    try:
        runtime.start(inprocess=settings.PLAYLIST_INPROCESS_WORKERS)
        _start_failed_at = None
    except Exception:
        _start_failed_at = time.monotonic()
        logger.exception("playlist background threads did not start; events wait in the outbox")
