"""Celery wiring shared by every service: the app factories, log-context propagation,
publishing."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, signals

from common import events
from common.log_context import current, event_id_var, request_id_var, user_id_var

logger = logging.getLogger(__name__)

CONTEXT_HEADERS = ("request_id", "user_id", "event_id")


def make_app(project: str) -> Celery:
    """The standard Django wiring: settings under the CELERY_ namespace, tasks autodiscovered."""
    app = Celery(project)
    app.config_from_object("django.conf:settings", namespace="CELERY")
    app.autodiscover_tasks()
    return app


def make_publisher_app(name: str, *, timeout: float, broker_url: str | None = None) -> Celery:
    """A Celery app for publishing only (the outbox relays), with every broker wait bounded.

    Connecting takes at most ``min(timeout, CELERY_BROKER_CONNECTION_TIMEOUT)``; on RabbitMQ
    each socket read and write, the publisher confirm included, at most ``timeout``, with one
    connection attempt per publish and no heartbeats (an idle relay is not dropped): a dead,
    hanging or half-open broker connection makes a publish fail within seconds instead of
    stalling the relay, and the outbox keeps the event. On Redis the transport's socket
    timeouts (common.settings) bound it.
    """
    from django.conf import settings

    app = Celery(name, set_as_current=False)
    app.config_from_object("django.conf:settings", namespace="CELERY")
    url = broker_url or settings.CELERY_BROKER_URL
    options = dict(app.conf.broker_transport_options or {})
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
        # Celery prefers the CELERY_BROKER_URL environment variable to broker_url, but not
        # to broker_write_url (what publishing uses): an explicit broker_url must win.
        broker_write_url=url,
        broker_transport_options=options,
        broker_connection_timeout=min(timeout, app.conf.broker_connection_timeout),
        broker_heartbeat=0,
    )
    return app


@signals.before_task_publish.connect
def _add_context_headers(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Carry request_id / user_id / event_id from the publisher's context to the worker."""
    if headers is None:
        return
    for key, value in current().items():
        if value and not headers.get(key):
            headers[key] = value


_tokens: dict[str, list[Any]] = {}


@signals.task_prerun.connect
def _bind_context(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    request = getattr(task, "request", None)
    if request is None or task_id is None:
        return
    headers = getattr(request, "headers", None) or {}
    values = {key: headers.get(key) or getattr(request, key, None) for key in CONTEXT_HEADERS}
    _tokens[task_id] = [
        request_id_var.set(values["request_id"] or None),
        user_id_var.set(values["user_id"] or None),
        event_id_var.set(values["event_id"] or None),
    ]


@signals.task_postrun.connect
def _unbind_context(task_id: str | None = None, **_: Any) -> None:
    tokens = _tokens.pop(task_id or "", None)
    if tokens:
        for var, token in zip((request_id_var, user_id_var, event_id_var), tokens, strict=True):
            var.reset(token)


def publish_envelope(app: Celery, envelope: dict[str, Any]) -> None:
    """Send one envelope to every consumer of its type, persistent, as tasks by name.

    Blocks until the broker accepted the message (publisher confirms on RabbitMQ) and raises
    on any failure; it never retries by itself, so callers choose how long to wait (the
    outbox relays retry; a request path must bound the wait).
    """
    for task_name, queue in events.ROUTES[envelope["type"]]:
        app.send_task(
            task_name,
            args=[envelope],
            queue=queue,
            exchange=queue.exchange,
            routing_key=queue.routing_key,
            headers=events.task_headers(envelope),
            # Celery would saferepr() the whole envelope for Flower and logs: costly, and
            # the ids say what a reader needs.
            argsrepr=f"({envelope['type']} {envelope['event_id']})",
            kwargsrepr="{}",
            delivery_mode=2,
            retry=False,
        )
    logger.info(
        "event published",
        extra={"event_id": envelope["event_id"], "event_type": envelope["type"]},
    )
