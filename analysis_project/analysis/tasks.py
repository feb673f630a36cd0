"""The worker's task: one event envelope in, counters updated exactly once.

At-least-once delivery (late acks, reject on worker lost) with idempotency by ``event_id``;
first deliveries are batched by the worker (analysis.batching), acknowledged after their batch
committed. Transient database errors retry with exponential backoff and jitter (the cache is
touched only after the commit, where a failure is logged and counted, never raised: an event
already counted is never retried or dead-lettered because Redis was down). A malformed or
unknown event, or one that still fails after the last retry, is rejected without requeue, so
RabbitMQ dead-letters it to ``analysis.events.dlq`` (on Redis, which cannot, the worker copies
it there).
"""

from __future__ import annotations

import logging
from typing import Any

from analysis_project.worker import dead_letter_copy
from celery import Task, shared_task
from celery.exceptions import Reject
from django.conf import settings
from django.db import InterfaceError, OperationalError

from analysis import metrics
from analysis.services import event_process
from common.events import ANALYSIS_TASK, InvalidEnvelope

logger = logging.getLogger(__name__)

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (OperationalError, InterfaceError)


def _ids(args: Any) -> dict[str, Any]:
    """event_id / type / user_id of whatever the message carried, for logs and metrics."""
    envelope = args[0] if isinstance(args, (list, tuple)) and args else None
    if not isinstance(envelope, dict):
        return {"event_id": None, "event_type": None, "user_id": None}
    return {
        key: str(envelope.get(name))[:100] if envelope.get(name) is not None else None
        for key, name in (("event_id", "event_id"), ("event_type", "type"), ("user_id", "user_id"))
    }


class EventTask(Task):
    """Retry policy and the retried / dead-lettered accounting of event tasks."""

    autoretry_for = TRANSIENT_ERRORS
    max_retries = settings.ANALYSIS_TASK_MAX_RETRIES
    retry_backoff = settings.ANALYSIS_TASK_RETRY_BACKOFF
    retry_backoff_max = settings.ANALYSIS_TASK_RETRY_BACKOFF_MAX
    retry_jitter = True
    acks_late = True
    reject_on_worker_lost = True
    # First deliveries are counted in batches in the worker's main process (analysis.batching);
    # retries and anything the batch cannot take run this task one message at a time.
    Strategy = "analysis.batching:batch_strategy"

    def on_retry(self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        ids = _ids(args)
        metrics.count_event(ids["event_type"], metrics.RETRIED)
        logger.warning(
            "event processing failed, retry %d of %d: %s",
            self.request.retries + 1,
            self.max_retries,
            exc,
            extra=ids,
        )

    def on_failure(self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
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
