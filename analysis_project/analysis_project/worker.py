"""Worker plumbing: metrics of prefork children, the dead-letter queue, undecodable messages.

- ``celery worker`` processes count in prometheus_client multiprocess mode (a fresh folder per
  worker, so the main process and its prefork children add up) and the main process serves
  them on ``ANALYSIS_WORKER_METRICS_PORT`` (0 disables it).
- The dead-letter queue is declared when the worker starts, so RabbitMQ has somewhere to put
  rejected messages; the worker never consumes it.
- Database connections persist across tasks (CONN_MAX_AGE, health checks) instead of being
  opened and closed around every task.
- Messages Celery cannot decode are rejected (dead-lettered) instead of acknowledged.
- Brokers without dead-lettering (Celery's Redis transport, the single-machine default): a
  copy of each rejected message is published to the dead-letter queue by the worker itself.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import sys
import tempfile
from typing import Any

from celery import Celery, signals
from celery.worker.consumer import Consumer

from common.events import ANALYSIS_DLQ, ANALYSIS_DLQ_NAME, DLX_EXCHANGE

logger = logging.getLogger(__name__)

_metrics_dir: str | None = None


def is_worker_process() -> bool:
    return "worker" in sys.argv[1:]


def prepare_metrics_dir() -> None:
    """In a ``celery worker`` process, switch prometheus_client to multiprocess mode.

    Must run before this service's metrics are created. Each worker gets a fresh folder
    (stale files of an earlier run would be added in), removed at exit.
    """
    global _metrics_dir
    if not is_worker_process():
        return
    # A fresh folder inside the one given (by the launcher or Compose), else in the temp dir.
    base = (
        os.environ.get("ANALYSIS_WORKER_METRICS_DIR")
        or os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        or None
    )
    if base:
        os.makedirs(base, exist_ok=True)
    _metrics_dir = tempfile.mkdtemp(prefix="analysis-worker-metrics-", dir=base)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir
    if "prometheus_client" in sys.modules:
        # The celery command imports Flower's plugin, which imports prometheus_client (and so
        # picks the value class) before this app; metrics created from now on must use files.
        from prometheus_client import values

        values.ValueClass = values.get_value_class()
    main_pid = os.getpid()

    def _cleanup() -> None:
        if os.getpid() == main_pid and _metrics_dir:
            shutil.rmtree(_metrics_dir, ignore_errors=True)

    atexit.register(_cleanup)


def start_metrics_server(port: int, addr: str) -> Any:
    """Serve the worker's metrics: summed over the pool children, plus the CPU and memory of
    the whole process tree (common.metrics), from the main process."""
    from prometheus_client import start_http_server

    from common.metrics import registry

    return start_http_server(port, addr=addr, registry=registry())


@signals.worker_ready.connect
def _on_worker_ready(sender: Any = None, **_: Any) -> None:
    from django.conf import settings

    app: Celery = sender.app
    declare_dead_letter_queue(app)
    port = settings.ANALYSIS_WORKER_METRICS_PORT
    if port:
        addr = os.environ.get("ANALYSIS_WORKER_METRICS_ADDR") or os.environ.get(
            "BIND_HOST", "127.0.0.1"
        )
        try:
            start_metrics_server(port, addr)
            logger.info("worker metrics on http://%s:%d/metrics", addr, port)
        except OSError as exc:
            logger.warning("worker metrics server not started on port %d: %s", port, exc)


@signals.task_prerun.connect
@signals.task_postrun.connect
def _recycle_db_connections(**_: Any) -> None:
    """Per task what Django does per request: drop unusable or too old connections."""
    from django.db import close_old_connections

    close_old_connections()


def declare_dead_letter_queue(app: Celery) -> None:
    try:
        with app.connection_for_write() as conn:
            ANALYSIS_DLQ.bind(conn.default_channel).declare()
    except Exception as exc:  # the worker still consumes; the broker may come back
        logger.error("could not declare %s: %s", ANALYSIS_DLQ_NAME, exc)


def broker_dead_letters(app: Celery) -> bool:
    """True when the broker dead-letters rejected messages itself (RabbitMQ)."""
    return str(app.conf.broker_url or "").split(":", 1)[0] in ("amqp", "amqps", "pyamqp")


def dead_letter_copy(app: Celery, body: Any, headers: dict[str, Any] | None = None) -> None:
    """Put ``body`` in the dead-letter queue ourselves, where the broker cannot."""
    if broker_dead_letters(app):
        return
    try:
        with app.producer_or_acquire() as producer:
            producer.publish(
                body,
                exchange=DLX_EXCHANGE,
                routing_key=ANALYSIS_DLQ_NAME,
                declare=[ANALYSIS_DLQ],
                serializer="json",
                headers=headers or {},
                delivery_mode=2,
                retry=False,
            )
    except Exception as exc:
        logger.error("could not copy a rejected message to %s: %s", ANALYSIS_DLQ_NAME, exc)


def _count_rejected(message: Any) -> None:
    from analysis import metrics

    metrics.count_event(None, metrics.DEAD_LETTERED)


class DeadLetteringConsumer(Consumer):
    """Celery's consumer, but an undecodable message is dead-lettered, not acknowledged."""

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        logger.error(
            "undecodable message dead-lettered: %s (content type %r)", exc, message.content_type
        )
        _count_rejected(message)
        dead_letter_copy(
            self.app,
            message.body.decode(errors="replace")
            if isinstance(message.body, bytes)
            else message.body,
        )
        message.reject(requeue=False)

    def on_unknown_message(self, body: Any, message: Any) -> None:
        _count_rejected(message)
        dead_letter_copy(self.app, body)
        super().on_unknown_message(body, message)

    def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
        _count_rejected(message)
        dead_letter_copy(self.app, body)
        super().on_unknown_task(body, message, exc)

    def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
        _count_rejected(message)
        dead_letter_copy(self.app, body)
        super().on_invalid_task(body, message, exc)
