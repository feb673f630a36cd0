"""Transactional-outbox relay shared by the services that publish events (auth, playlist).

A service writes each event into its own store atomically with the change that caused it
(an ORM table in the same transaction; for MongoDB, the same single-document write, see
``playlists/outbox.py``). A :class:`Relay` publishes pending events with publisher confirms
and removes each one only after the broker accepted it. Publishing may happen twice (the
request path and the relay process can race, or the relay can die between a publish and the
forgetting); consumers dedupe by ``event_id``. It never happens zero times: an event leaves
the store only after a confirmed publish.

Forgetting goes in batches: a pass publishes its events one by one, each confirmed, and then
asks the store to forget all of the confirmed ones at once (:meth:`OutboxStore.
mark_published_many`: one ``DELETE ... WHERE event_id IN``, one ``delete_many`` or ``$pull``
per document), also
when a publish in the middle failed. A crash inside a pass therefore republishes at most that
pass's confirmed events (``batch_size``), never drops one.

The request path never waits on the broker: it calls :meth:`Relay.submit` (or :meth:`wake`),
which hands the event to a background thread of the same process and returns at once
(:class:`ProcessRelay`: one such thread per process, auth's web processes).

Every service runs the same relay process, ``manage.py outbox_relay`` (:class:`RelayCommand`):

- without options it publishes until SIGTERM/SIGINT, then exits with status 0 (as ``up``,
  Compose and Kubernetes run it);
- ``--once`` publishes everything pending now, at any age, batch after batch, and exits: status 0
  if the outbox was drained, 1 if a publish or the store failed (what is left stays for the next
  run; nothing is lost either way).
"""

from __future__ import annotations

import logging
import os
import queue
import random
import signal
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

from celery import Celery
from django.core.management.base import BaseCommand, CommandParser

from common.celery_utils import publish_envelope
from common.log_context import bound

logger = logging.getLogger(__name__)


class OutboxStore(Protocol):
    """Where a service keeps events that are written but not yet confirmed by the broker."""

    def pending(self, *, limit: int, older_than_seconds: float) -> list[dict[str, Any]]:
        """Up to ``limit`` envelopes written at least ``older_than_seconds`` ago, oldest first."""
        ...

    def mark_published(self, *, event_id: str) -> None:
        """Forget one event: the broker confirmed it."""
        ...

    def mark_published_many(self, *, event_ids: Sequence[str]) -> None:
        """Forget these events, all confirmed by the broker, in as few writes as the store can.

        Ids that are unknown or already forgotten are ignored (a second relay got there first).
        """
        ...


Callback = Callable[[dict[str, Any]], None]
ErrorCallback = Callable[[dict[str, Any], BaseException], None]


class Relay:
    """Publishes an outbox's pending events; runs as a thread or as the body of a process."""

    def __init__(
        self,
        *,
        app: Celery,
        store: OutboxStore,
        batch_size: int = 100,
        interval: float = 1.0,
        grace_seconds: float = 0.0,
        max_backoff: float = 30.0,
        on_published: Callback | None = None,
        on_failed: ErrorCallback | None = None,
    ) -> None:
        self.app = app
        self.store = store
        self.batch_size = batch_size
        self.interval = interval
        # Events younger than this are left to the process that wrote them (fewer duplicates).
        self.grace_seconds = grace_seconds
        self.max_backoff = max_backoff
        self.on_published = on_published
        self.on_failed = on_failed
        self._wake = threading.Event()
        self._submitted: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def publish(self, envelope: dict[str, Any]) -> bool:
        """Publish one envelope, confirmed; False on any failure. The store still holds it:
        :meth:`run_once` forgets the confirmed ones of a pass together."""
        with bound(
            event_id=envelope.get("event_id"),
            request_id=envelope.get("request_id"),
            user_id=envelope.get("user_id"),
        ):
            try:
                publish_envelope(self.app, envelope)
            except Exception as exc:
                logger.warning(
                    "event publish failed, kept in the outbox: %s: %s", type(exc).__name__, exc
                )
                if self.on_failed:
                    self.on_failed(envelope, exc)
                return False
            return True

    def _forget(self, confirmed: list[dict[str, Any]]) -> None:
        """Forget every confirmed envelope in one call to the store, then the callbacks.

        ``confirmed`` is emptied first: a store that fails is not asked twice for one pass.
        """
        if not confirmed:
            return
        envelopes = list(confirmed)
        confirmed.clear()
        self.store.mark_published_many(event_ids=[envelope["event_id"] for envelope in envelopes])
        if self.on_published:
            for envelope in envelopes:
                self.on_published(envelope)

    def _publish_all(
        self, envelopes: Iterable[dict[str, Any]], confirmed: list[dict[str, Any]]
    ) -> tuple[int, bool]:
        """Publish in order until one fails, forgetting every ``batch_size`` confirmed ones:
        (how many were confirmed, whether all were)."""
        count = 0
        for envelope in envelopes:
            if not self.publish(envelope):
                return count, False
            confirmed.append(envelope)
            count += 1
            if len(confirmed) >= self.batch_size:
                self._forget(confirmed)
        return count, True

    def _submitted_now(self) -> Iterator[dict[str, Any]]:
        while True:
            try:
                yield self._submitted.get_nowait()
            except queue.Empty:
                return

    def run_once(self) -> tuple[int, str]:
        """Publish what is pending now: (events published, "drained" | "more" | "failed").

        What was confirmed is forgotten before this returns, even when a later publish failed
        or the store raised; if forgetting itself raises (the store is down), those events stay
        in the store and go out again.
        """
        confirmed: list[dict[str, Any]] = []
        try:
            published, ok = self._publish_all(self._submitted_now(), confirmed)
            # Forgotten before the scan, so that the scan does not find them again.
            self._forget(confirmed)
            if not ok:
                return published, "failed"
            batch = self.store.pending(limit=self.batch_size, older_than_seconds=self.grace_seconds)
            count, ok = self._publish_all(batch, confirmed)
            published += count
        finally:
            self._forget(confirmed)
        if not ok:
            return published, "failed"
        return published, "more" if len(batch) >= self.batch_size else "drained"

    def run_forever(self, stop: threading.Event) -> None:
        """Loop until ``stop`` is set: drain, wait for a wake-up or the interval; back off."""
        failures = 0
        while not stop.is_set():
            # Cleared before the pass, so a submit() during the pass wakes the next wait.
            self._wake.clear()
            try:
                _, state = self.run_once()
            except Exception:  # the store itself failed (database down): retry later
                logger.exception("outbox relay pass failed")
                state = "failed"
            if state == "more":
                continue
            if state == "drained":
                failures = 0
                self._wake.wait(self.interval)
                continue
            failures += 1
            delay = min(self.max_backoff, self.interval * 2 ** min(failures, 8))
            stop.wait(delay * (0.5 + random.random() / 2))  # noqa: S311 - jitter, not crypto

    def submit(self, envelope: dict[str, Any]) -> None:
        """Publish this event as soon as possible from the background thread; returns at once."""
        self._submitted.put(envelope)
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def start_thread(
        self, stop: threading.Event, *, name: str = "outbox-relay"
    ) -> threading.Thread:
        self._thread = threading.Thread(
            target=self.run_forever, args=(stop,), name=name, daemon=True
        )
        self._thread.start()
        return self._thread


def _close_db_connections() -> None:
    """Close this thread's Django database connections (a relay thread or process ends)."""
    from django.db import connections

    connections.close_all()


class ProcessRelay:
    """One relay thread per process (recreated after a fork), started on first use.

    ``build`` makes the process's relay; :meth:`submit` is what the request path calls after
    commit.
    """

    def __init__(self, build: Callable[[], Relay]) -> None:
        self.build = build
        self._lock = threading.Lock()
        self._relay: Relay | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def install(self, relay: Relay | None) -> None:
        """Use ``relay`` from now on (tests; None: build the default on next use)."""
        self.shutdown()
        with self._lock:
            self._relay = relay
            self._pid = os.getpid() if relay is not None else 0

    def get(self) -> Relay:
        with self._lock:
            if self._relay is None or self._pid != os.getpid():
                self._relay = self.build()
                self._pid = os.getpid()
                self._thread = None
            if self._thread is None or not self._thread.is_alive():
                self._stop = threading.Event()
                self._thread = threading.Thread(
                    target=self._run,
                    args=(self._relay, self._stop),
                    name="outbox-relay",
                    daemon=True,
                )
                self._thread.start()
            return self._relay

    @staticmethod
    def _run(relay: Relay, stop: threading.Event) -> None:
        try:
            relay.run_forever(stop)
        finally:
            _close_db_connections()  # this thread's connections only

    def submit(self, envelope: dict[str, Any]) -> None:
        """Publish soon from the relay thread; never raises (the outbox row is the guarantee)."""
        try:
            self.get().submit(envelope)
        except Exception:
            logger.exception(
                "could not hand the event to the relay thread; the relay process will publish it",
                extra={"event_id": envelope.get("event_id")},
            )

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop the thread (it finishes the publish in progress) and wait for it."""
        with self._lock:
            thread, relay = self._thread, self._relay
            self._stop.set()
            self._thread = None
        if relay is not None:
            relay.wake()
        if thread is not None:
            thread.join(timeout)


def publish_pending(relay: Relay) -> tuple[int, str]:
    """``outbox_relay --once``: passes until nothing is left or one fails.

    Returns (events published, "drained" | "failed"); a store that raises counts as failed.
    """
    total = 0
    while True:
        try:
            published, state = relay.run_once()
        except Exception:  # the store itself failed (database down)
            logger.exception("outbox relay pass failed")
            return total, "failed"
        total += published
        if state != "more":
            return total, state


class RelayCommand(BaseCommand):
    """The whole of a service's ``manage.py outbox_relay`` (see this module's docstring).

    A service subclasses it as ``Command``, sets ``help`` and implements :meth:`build_relay`
    (and :meth:`metrics_port` if the process serves its own /metrics).
    """

    def build_relay(self, *, grace_seconds: float | None = None) -> Relay:
        """This service's relay; ``grace_seconds`` overrides its setting."""
        raise NotImplementedError

    def metrics_port(self) -> int | None:
        """Port of the process's own /metrics (None: not served)."""
        return None

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--once",
            action="store_true",
            help="Publish everything pending now (no grace period), then exit: status 0 if "
            "the outbox was drained, 1 if a publish or the store failed.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            if options["once"]:
                self._once()
            else:
                self._until_stopped()
        finally:
            _close_db_connections()

    def _once(self) -> None:
        published, state = publish_pending(self.build_relay(grace_seconds=0))
        self.stdout.write(f"published {published} event(s); {state}")
        if state != "drained":
            raise SystemExit(1)

    def _until_stopped(self) -> None:
        relay = self.build_relay()
        stop = threading.Event()

        def _stop(signum: int, _frame: object) -> None:
            logger.info("outbox relay stopping (signal %s)", signum)
            stop.set()
            relay.wake()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        port = self.metrics_port()
        if port:
            from prometheus_client import start_http_server

            start_http_server(port)
        logger.info(
            "outbox relay started",
            extra={"interval": relay.interval, "grace_seconds": relay.grace_seconds},
        )
        relay.run_forever(stop)
        logger.info("outbox relay stopped")
