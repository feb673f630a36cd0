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
- Poison messages: on RabbitMQ the event queue is a quorum queue whose delivery limit
  (``EVENT_DELIVERY_LIMIT``) dead-letters a message returned too often (its worker died, or it
  hit the hard time limit). Redis has no delivery limit: :class:`RedisDeliveryGuard` counts
  the redeliveries of each message in the broker's Redis and dead-letters it past the limit.
- Retries (countdown) are published to the event queue with an ETA and held by the worker
  until due: the events exchange is a direct one, which Celery's native delayed delivery for
  quorum queues cannot serve, so that bootstep is left out. The worker's prefetch is fixed on
  a quorum queue (no global QoS): waiting retries occupy prefetch slots, which bounds how
  many messages a failing worker takes in.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import sys
import tempfile
from typing import Any

import redis
from celery import Celery, signals
from celery.worker.consumer import Consumer

from common.events import ANALYSIS_DLQ, ANALYSIS_DLQ_NAME, DLX_EXCHANGE, EVENT_DELIVERY_LIMIT

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


def dead_letter_copy(app: Celery, body: Any, headers: dict[str, Any] | None = None) -> bool:
    """Put ``body`` in the dead-letter queue ourselves, where the broker cannot; False if that
    failed (logged)."""
    if broker_dead_letters(app):
        return True
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
        return False
    return True


def delivery_count(message: Any) -> int:
    """How many times the broker delivered ``message`` before (0: a first delivery)."""
    headers = getattr(message, "headers", None) or {}
    count = headers.get("x-delivery-count")  # a quorum queue's own count
    if isinstance(count, int):
        return count
    delivery_info = getattr(message, "delivery_info", None) or {}
    return int(bool(delivery_info.get("redelivered") or headers.get("redelivered")))


class RedisDeliveryGuard:
    """The delivery limit on Celery's Redis transport, which has none of its own.

    Redelivered messages of the event task (restored after a worker died, or requeued after
    the hard time limit) are counted per task id in the broker's Redis (under the broker's
    key prefix, for a day). Past ``limit`` redeliveries the message is copied to the
    dead-letter queue and acknowledged. A first delivery costs nothing; if Redis cannot
    count, the message is processed (and counted on its next redelivery).
    """

    KEY = "analysis.deliveries:"
    TTL_SECONDS = 86400

    def __init__(self, app: Celery, limit: int = EVENT_DELIVERY_LIMIT) -> None:
        self.app = app
        self.limit = limit
        options = app.conf.broker_transport_options or {}
        self.prefix = options.get("global_keyprefix", "")
        self.client = redis.Redis.from_url(
            app.conf.broker_url,
            socket_timeout=options.get("socket_timeout", 2.0),
            socket_connect_timeout=options.get("socket_connect_timeout", 2.0),
        )

    def redeliveries(self, message: Any) -> int:
        """How often this message was redelivered, this delivery included (0: first)."""
        task_id = (getattr(message, "headers", None) or {}).get("id")
        if not delivery_count(message) or not task_id:
            return 0
        key = f"{self.prefix}{self.KEY}{task_id}"
        try:
            with self.client.pipeline() as pipe:
                count, _ = pipe.incr(key).expire(key, self.TTL_SECONDS).execute()
        except redis.RedisError as exc:
            logger.warning("could not count the redeliveries of %s: %s", task_id, exc)
            return 0
        return int(count)

    def dead_letter_if_over(self, message: Any) -> bool:
        """True if ``message`` went past the limit: then it is in the DLQ and acknowledged."""
        count = self.redeliveries(message)
        if count <= self.limit:
            return False
        from analysis import metrics

        payload = message.payload
        args = payload[0] if isinstance(payload, (list, tuple)) and payload else None
        envelope = args[0] if isinstance(args, (list, tuple)) and args else None
        if not dead_letter_copy(self.app, payload):
            return False  # processed once more rather than lost
        message.ack()
        event_type = envelope.get("type") if isinstance(envelope, dict) else None
        metrics.count_event(event_type, metrics.DEAD_LETTERED)
        logger.error(
            "event dead-lettered: delivered %d times, over the delivery limit (%d)",
            count + 1,
            self.limit + 1,
            extra={
                "event_id": envelope.get("event_id") if isinstance(envelope, dict) else None,
                "event_type": event_type,
            },
        )
        return True


def _count_rejected(message: Any) -> None:
    from analysis import metrics

    metrics.count_event(None, metrics.DEAD_LETTERED)


class _DirectExchangeRetries(logging.Filter):
    """Drops Celery's warning, on every retry, that native delayed delivery needs a topic
    exchange: retries are ETA messages held by the worker by design (see the module doc)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "not supported with native delayed delivery" not in record.getMessage()


logging.getLogger("celery.app.base").addFilter(_DirectExchangeRetries())


class DeadLetteringConsumer(Consumer):
    """Celery's consumer, but an undecodable message is dead-lettered, not acknowledged, and
    without native delayed delivery (see the module doc)."""

    class Blueprint(Consumer.Blueprint):
        default_steps = [
            step
            for step in Consumer.Blueprint.default_steps
            if not step.endswith(":DelayedDelivery")
        ]

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
