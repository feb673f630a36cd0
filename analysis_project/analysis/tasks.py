"""The worker's task: one event envelope in, counters updated exactly once.

At-least-once delivery (late acks, reject on worker lost) with idempotency by ``event_id``;
first deliveries are batched by the worker (analysis.batching), acknowledged after their batch
committed. Transient database errors retry with exponential backoff and jitter (the cache is
touched only after the commit, where a failure is logged and counted, never raised: an event
already counted is never retried or dead-lettered because Redis was down). While the database
cannot be reached at all (refused, reset, shutting down) the event is not at fault: it retries
without a limit, every ``ANALYSIS_TASK_RETRY_BACKOFF_MAX`` seconds at most, and is counted
once the database is back, never dead-lettered. Other transient errors (a lock or statement
timeout, a deadlock) retry ``ANALYSIS_TASK_MAX_RETRIES`` times. A malformed or unknown event,
or one that still fails after the last retry, is rejected without requeue, so RabbitMQ
dead-letters it to ``analysis.events.dlq`` (on Redis, which cannot, the worker copies it there).

A message whose pool process died or that hit the hard time limit is requeued (counted
``requeued``), until the queue's delivery limit (``EVENT_DELIVERY_LIMIT``) makes the broker
dead-letter it (counted ``dead_lettered`` when the last allowed delivery fails that way; see
analysis_project.worker for the Redis broker's equivalent).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from analysis_project.worker import broker_dead_letters, dead_letter_copy, delivery_count
from billiard.exceptions import TimeLimitExceeded, WorkerLostError
from celery import Task, shared_task
from celery.exceptions import Reject
from celery.worker.request import Request
from django.conf import settings
from django.db import InterfaceError, OperationalError

from analysis import metrics
from analysis.services import event_process
from common.events import ANALYSIS_TASK, EVENT_DELIVERY_LIMIT, InvalidEnvelope

logger = logging.getLogger(__name__)

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (OperationalError, InterfaceError)
# SQLSTATEs of a server that is going away or not accepting connections yet: connection
# exceptions (class 08), admin / crash shutdown, cannot connect now (starting up, recovering).
_UNREACHABLE_STATES = ("08", "57P01", "57P02", "57P03")
# "No limit" for Celery, which reads None as "the task's default".
UNLIMITED = sys.maxsize


def database_unreachable(exc: BaseException) -> bool:
    """True when ``exc`` says the database cannot be reached (as opposed to a statement that
    failed on a server that answers): an InterfaceError (connection closed), or an
    OperationalError without an SQLSTATE (refused, reset, timed out connecting) or with one of
    ``_UNREACHABLE_STATES``."""
    if isinstance(exc, InterfaceError):
        return True
    if not isinstance(exc, OperationalError):
        return False
    state = getattr(exc.__cause__, "sqlstate", None)
    return state is None or str(state).startswith(_UNREACHABLE_STATES)


def _ids(args: Any) -> dict[str, Any]:
    """event_id / type / user_id of whatever the message carried, for logs and metrics."""
    envelope = args[0] if isinstance(args, (list, tuple)) and args else None
    if not isinstance(envelope, dict):
        return {"event_id": None, "event_type": None, "user_id": None}
    return {
        key: str(envelope.get(name))[:100] if envelope.get(name) is not None else None
        for key, name in (("event_id", "event_id"), ("event_type", "type"), ("user_id", "user_id"))
    }


class EventRequest(Request):
    """Celery's request, plus the accounting of messages it requeues (hard time limit, a pool
    process lost): ``requeued``, or ``dead_lettered`` when that was the last delivery the
    queue allows (the broker dead-letters it)."""

    def on_timeout(self, soft: bool, timeout: float) -> None:
        super().on_timeout(soft, timeout)
        if not soft and self.task.acks_late and not self.task.acks_on_timeout:
            self._requeued(f"hard time limit ({timeout}s) exceeded")

    def on_failure(
        self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False
    ) -> None:
        exc = getattr(exc_info.exception, "exc", exc_info.exception)
        lost = isinstance(exc, (WorkerLostError, SystemExit, KeyboardInterrupt))
        cancelled = self._already_cancelled or self._already_revoked
        super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)
        if lost and not cancelled and self.task.acks_late and self.task.reject_on_worker_lost:
            self._requeued(f"the worker process was lost: {exc}")

    def _requeued(self, why: str) -> None:
        ids = _ids(self.args)
        if not broker_dead_letters(self.task.app):  # Redis: the worker's own limit decides
            metrics.count_event(ids["event_type"], metrics.REQUEUED)
            logger.warning("event requeued: %s", why, extra=ids)
            return
        deliveries = delivery_count(self._message) + 1
        if deliveries > EVENT_DELIVERY_LIMIT:
            metrics.count_event(ids["event_type"], metrics.DEAD_LETTERED)
            logger.error(
                "event dead-lettered by the broker after %d deliveries (the limit): %s",
                deliveries,
                why,
                extra={**ids, "envelope": self.args},
            )
            return
        metrics.count_event(ids["event_type"], metrics.REQUEUED)
        logger.warning(
            "event requeued, delivery %d of at most %d: %s",
            deliveries,
            EVENT_DELIVERY_LIMIT + 1,
            why,
            extra=ids,
        )


class EventTask(Task):
    """Retry policy and the retried / dead-lettered accounting of event tasks."""

    autoretry_for = TRANSIENT_ERRORS
    max_retries = settings.ANALYSIS_TASK_MAX_RETRIES
    retry_backoff = settings.ANALYSIS_TASK_RETRY_BACKOFF
    retry_backoff_max = settings.ANALYSIS_TASK_RETRY_BACKOFF_MAX
    retry_jitter = True
    acks_late = True
    reject_on_worker_lost = True
    Request = EventRequest
    # First deliveries are counted in batches in the worker's main process (analysis.batching);
    # retries and anything the batch cannot take run this task one message at a time.
    Strategy = "analysis.batching:batch_strategy"

    def retry(self, *args: Any, exc: BaseException | None = None, **options: Any) -> Any:
        """Celery's retry (called by autoretry with the backoff's countdown), without a limit
        while the database cannot be reached: the event waits for it."""
        if exc is not None and database_unreachable(exc):
            options["max_retries"] = UNLIMITED
        return super().retry(*args, exc=exc, **options)

    def on_retry(self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        ids = _ids(args)
        metrics.count_event(ids["event_type"], metrics.RETRIED)
        limit = "database unreachable" if database_unreachable(exc) else f"of {self.max_retries}"
        logger.warning(
            "event processing failed, retry %d (%s): %s",
            self.request.retries + 1,
            limit,
            exc,
            extra=ids,
        )

    def on_failure(self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        if isinstance(exc, TimeLimitExceeded) and not self.acks_on_timeout:
            return  # the hard time limit: requeued, not dead-lettered (EventRequest counts it)
        # acks_late with task_acks_on_failure_or_timeout=False: Celery rejects the message
        # without requeue after this, so the broker dead-letters it.
        ids = _ids(args)
        metrics.count_event(ids["event_type"], metrics.DEAD_LETTERED)
        logger.error(
            "event dead-lettered after %d retries: %s: %s",
            self.request.retries,
            type(exc).__name__,
            exc,
            extra={**ids, "envelope": args},
        )
        dead_letter_copy(self.app, args[0] if args else None)


@shared_task(bind=True, base=EventTask, name=ANALYSIS_TASK)
def handle_event(self: EventTask, envelope: Any) -> str:
    """Count one envelope (see common.events); returns the outcome (ok or duplicate)."""
    try:
        return event_process(envelope=envelope)
    except InvalidEnvelope as exc:
        ids = _ids([envelope])
        metrics.count_event(ids["event_type"], metrics.DEAD_LETTERED)
        logger.error("invalid event dead-lettered: %s", exc, extra={**ids, "envelope": envelope})
        dead_letter_copy(self.app, envelope)
        raise Reject(str(exc), requeue=False) from exc
