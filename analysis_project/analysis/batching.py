"""Batched consumption of ``analysis.events`` inside the Celery worker (a task strategy).

Celery hands every message of the event task to :func:`batch_strategy` (``EventTask.Strategy``)
in the worker's main process. First deliveries of well-formed envelopes are buffered and
counted in batches (:func:`analysis.services.events_process`: one transaction, one bulk insert
of the event ids, one upsert per counter table, then the cache invalidation, whose failure is
logged and counted, never raised), and each message is acknowledged only after its batch
committed (at-least-once).
Everything else takes Celery's ordinary per-message path (``handle_event`` in the pool with
its retries, dead-lettering, logs and Flower task events):

- a malformed envelope or an unknown type (the task rejects it into the dead-letter queue);
- a retry (``retries`` header) or a message with an ETA;
- a redelivery (the broker delivered it before: it may be what killed a worker), so a poison
  message runs alone in a pool process and cannot take a batch and the main process down
  again;
- every message of a batch that failed (database unavailable, a deadlock twice, a bug):
  processed one by one, so a bad message cannot hold the others back and the
  per-message retry policy applies. Counters that the batch committed are not counted
  again (the event ids are recorded in the same transaction).

A batch is flushed when ``ANALYSIS_BATCH_SIZE`` messages wait or ``ANALYSIS_BATCH_WAIT_MS``
after its first message arrived. ``ANALYSIS_BATCH_SIZE=1`` switches batching off. The
worker's prefetch (``CELERY_WORKER_PREFETCH_MULTIPLIER`` x concurrency) bounds how many
unacknowledged messages it holds: keep it above the batch size.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from analysis_project.worker import RedisDeliveryGuard, broker_dead_letters, delivery_count
from celery.worker.strategy import default as default_strategy
from django.conf import settings
from django.db import OperationalError, close_old_connections

from analysis import services
from common.events import ANALYSIS_TASK

logger = logging.getLogger(__name__)

# A batch that deadlocked with another worker's is retried this many times before it falls
# back to one-by-one processing (rows are locked in key order, so deadlocks are rare).
DEADLOCK_RETRIES = 2


@dataclass
class _Pending:
    message: Any
    body: Any
    ack: Any
    reject: Any
    callbacks: Any
    event: services.ParsedEvent


def _is_deadlock(exc: BaseException) -> bool:
    cause = exc.__cause__
    return type(cause).__name__ in ("DeadlockDetected", "SerializationFailure")


def _first_delivery_envelope(message: Any) -> Any:
    """The envelope of a first, immediate delivery of the event task (protocol 2), else
    raise LookupError (the message takes the ordinary path)."""
    headers = message.headers or {}
    if headers.get("task") != ANALYSIS_TASK or headers.get("eta") or headers.get("retries"):
        raise LookupError("not a first delivery of the event task")
    if delivery_count(message):
        raise LookupError("delivered before")
    payload = message.payload
    if not isinstance(payload, (list, tuple)) or len(payload) != 3:
        raise LookupError("not a protocol 2 message")
    args, kwargs, _embed = payload
    if kwargs or not isinstance(args, (list, tuple)) or len(args) != 1:
        raise LookupError("unexpected arguments")
    return args[0]


class Batcher:
    """The buffer of one worker process; flushes run on the consumer's event loop."""

    def __init__(self, consumer: Any, fallback: Any, size: int, wait: float) -> None:
        self.consumer = consumer
        self.fallback = fallback
        self.size = size
        self.wait = wait
        self.pending: list[_Pending] = []
        self.lock = threading.RLock()
        self.timer_entry: Any = None

    def handle(
        self, message: Any, body: Any, ack: Any, reject: Any, callbacks: Any, **kw: Any
    ) -> Any:
        try:
            event = services.event_parse(envelope=_first_delivery_envelope(message))
        except Exception:  # InvalidEnvelope, a retry, anything odd: the ordinary path decides
            return self.fallback(message, body, ack, reject, callbacks, **kw)
        with self.lock:
            self.pending.append(_Pending(message, body, ack, reject, callbacks, event))
            if len(self.pending) >= self.size:
                self.flush()
            elif self.timer_entry is None:
                self.timer_entry = self.consumer.timer.call_after(self.wait, self._on_timer)
        return None

    def _on_timer(self) -> None:
        with self.lock:
            self.timer_entry = None
            self.flush()

    def flush(self) -> None:
        with self.lock:
            batch, self.pending = self.pending, []
            if self.timer_entry is not None:
                self.timer_entry.cancel()
                self.timer_entry = None
            if not batch:
                return
            started = time.monotonic()
            try:
                self._process(batch)
            except Exception as exc:
                logger.warning(
                    "batch of %d events failed, processing them one by one: %s: %s",
                    len(batch),
                    type(exc).__name__,
                    exc,
                )
                for item in batch:
                    self.fallback(item.message, item.body, item.ack, item.reject, item.callbacks)
                return
            connection_errors = self.consumer.connection_errors
            for item in batch:
                item.ack(logger, connection_errors)
            logger.debug(
                "batch of %d events committed in %.1f ms",
                len(batch),
                (time.monotonic() - started) * 1000,
            )

    def _process(self, batch: list[_Pending]) -> None:
        events = [item.event for item in batch]
        for attempt in range(DEADLOCK_RETRIES + 1):
            # What Django does per request: drop an unusable or too old connection.
            close_old_connections()
            try:
                services.events_process(events=events)
                return
            except OperationalError as exc:
                if attempt == DEADLOCK_RETRIES or not _is_deadlock(exc):
                    raise
                logger.info("batch deadlocked with another worker's, retrying: %s", exc)


def batch_strategy(task: Any, app: Any, consumer: Any, **kwargs: Any) -> Any:
    """Celery task strategy (``Task.Strategy``): batch first deliveries, else the default;
    on a broker without a delivery limit (Redis), the worker's own limit first."""
    handler = fallback = default_strategy(task, app, consumer, **kwargs)
    size = settings.ANALYSIS_BATCH_SIZE
    # Batches flush and acknowledge on the event loop's thread; a worker without one
    # (eventlet/gevent pools) counts one message at a time.
    if size > 1 and consumer.hub is not None:
        batcher = Batcher(consumer, fallback, size, settings.ANALYSIS_BATCH_WAIT_MS / 1000)
        consumer.analysis_batcher = batcher
        handler = batcher.handle
    if broker_dead_letters(app):
        return handler
    guard = RedisDeliveryGuard(app)

    def guarded(message: Any, *args: Any, **kw: Any) -> Any:
        if guard.dead_letter_if_over(message):
            return None
        return handler(message, *args, **kw)

    return guarded
