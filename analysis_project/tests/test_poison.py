"""Poison messages: a message that kills its worker process or hits the hard time
limit every time is dead-lettered after the queue's delivery limit, counted once as
dead-lettered, and every other event published around it is counted exactly once.

Real ``celery worker`` processes on the run's RabbitMQ vhost (a quorum queue with
``x-delivery-limit``) or on Celery's Redis transport (the worker's own delivery limit).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from analysis.models import UserStats
from celery import Celery

from common.celery_utils import publish_envelope
from common.events import (
    ANALYSIS_DLQ,
    ANALYSIS_QUEUE,
    EVENT_DELIVERY_LIMIT,
    EVENTS_EXCHANGE,
    PLAYLIST_CREATED,
    TRACK_PLAYED,
)
from tests.conftest import Worker, publisher_app, read_queue, wait_for
from tests.factories import envelope
from tests.poison_tasks import KILL_TASK, SLEEP_TASK
from tests.test_worker import assert_counts, processed_count, random_events

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

POISON_ENV = {"CELERY_WORKER_INCLUDE": "tests.poison_tasks"}
GOOD = 150  # events published around the poison message


def publish_poison(app: Celery, task: str, attempts: Path) -> dict[str, Any]:
    poison = envelope(TRACK_PLAYED, "poisoned", genre="rock")
    app.send_task(
        task,
        args=[poison, str(attempts)],
        queue=ANALYSIS_QUEUE,
        exchange=EVENTS_EXCHANGE,
        routing_key=ANALYSIS_QUEUE.routing_key,
        headers={"event_id": poison["event_id"]},
    )
    return poison


def run_poison_scenario(
    worker: Worker, app: Celery, task: str, tmp_path: Path
) -> tuple[dict, dict[str, Any], Path]:
    """GOOD events, the poison message in their middle; returns what the counts must be."""
    attempts = tmp_path / "attempts"
    attempts.mkdir()
    events, expected = random_events(GOOD, users=3, seed=13)
    for event in events[: GOOD // 2]:
        publish_envelope(app, event)
    poison = publish_poison(app, task, attempts)
    for event in events[GOOD // 2 :]:
        publish_envelope(app, event)
    wait_for(lambda: processed_count() == GOOD, timeout=90, what=f"{GOOD} events processed")
    return expected, poison, attempts


def outcome(worker: Worker, name: str) -> float:
    return worker.sample("analysis_events_processed_total", type=TRACK_PLAYED, outcome=name)


def assert_poison_accounting(worker: Worker, attempts: Path, *, requeued: int) -> None:
    # Delivered the limit + 1 times, never again.
    assert len(list(attempts.iterdir())) == EVENT_DELIVERY_LIMIT + 1
    wait_for(
        lambda: outcome(worker, "dead_lettered") == 1,
        timeout=15,
        what=f"the dead_lettered metric in\n{worker.metrics()}",
    )
    assert outcome(worker, "requeued") == requeued
    assert not UserStats.objects.filter(user_id="poisoned").exists()


@pytest.mark.parametrize(
    ("task", "why"),
    [(KILL_TASK, "the worker process was lost"), (SLEEP_TASK, "hard time limit (1s) exceeded")],
)
def test_rabbitmq_dead_letters_a_poison_message_after_the_limit_and_the_rest_flows(
    start_worker, publisher, queues, tmp_path, task, why
):
    worker = start_worker("poison", **POISON_ENV)
    expected, poison, attempts = run_poison_scenario(worker, publisher, task, tmp_path)
    dead = read_queue(queues, ANALYSIS_DLQ, expect=2, timeout=30)
    assert len(dead) == 1
    assert dead[0].headers["x-first-death-reason"] == "delivery_limit"
    assert dead[0].headers["x-first-death-queue"] == ANALYSIS_QUEUE.name
    assert dead[0].payload[0][0] == poison
    # The broker dead-lettered it; the worker counted that once, and each earlier requeue.
    assert_poison_accounting(worker, attempts, requeued=EVENT_DELIVERY_LIMIT)
    assert_counts(expected)
    ok = sum(
        worker.sample("analysis_events_processed_total", type=event_type, outcome="ok")
        for event_type in (PLAYLIST_CREATED, "PlaylistDeleted", "PlaylistUpdated", TRACK_PLAYED)
    )
    assert ok == GOOD
    log = worker.log()
    assert log.count("event requeued, delivery ") == EVENT_DELIVERY_LIMIT
    assert why in log
    assert f"event dead-lettered by the broker after {EVENT_DELIVERY_LIMIT + 1} deliveries" in log
    worker.stop()
    assert read_queue(queues, ANALYSIS_QUEUE, expect=1, timeout=1) == []


def test_redis_broker_worker_dead_letters_a_poison_message_after_the_limit(
    launch_worker, redis_broker, tmp_path
):
    """Celery's Redis transport has no delivery limit: the worker's own guard counts the
    redeliveries and copies the message to the DLQ once, with the hard time limit (which
    used to copy it to the DLQ *and* requeue it, every time)."""
    worker = launch_worker(
        "redis-poison",
        CELERY_BROKER_URL=redis_broker.url,
        CELERY_BROKER_KEY_PREFIX=redis_broker.prefix,
        **POISON_ENV,
    )
    app = publisher_app("redis-publisher", redis_broker.url, global_keyprefix=redis_broker.prefix)
    try:
        expected, poison, attempts = run_poison_scenario(worker, app, SLEEP_TASK, tmp_path)
        with redis_broker.connection() as conn:
            wait_for(
                lambda: outcome(worker, "dead_lettered") == 1,
                timeout=30,
                what="the guard's dead-lettering",
            )
            dead = read_queue(conn, ANALYSIS_DLQ, expect=2, timeout=3)
        assert [message.payload[0][0] for message in dead] == [poison]
        # Every failed delivery was requeued; the one past the limit was dead-lettered.
        assert_poison_accounting(worker, attempts, requeued=EVENT_DELIVERY_LIMIT + 1)
        assert_counts(expected)
        assert "over the delivery limit" in worker.log()
    finally:
        app.close()
