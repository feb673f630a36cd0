"""Two outbox relays draining one auth outbox at once (Kubernetes runs two replicas).

The decision (docs/kubernetes.md, "Relays with more than one replica"): no lease. Both relays
may publish the same UserDeleted; each deletes a row only after the broker confirmed the
publish, and the consumers (analysis, playlist) apply an event once by its event_id. These
tests drive the public relay API (build_relay, run_once) against the real RabbitMQ vhost of
the run, with the rows committed (two threads, two database connections).
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import pytest
from accounts.models import OutboxEvent
from accounts.outbox import OrmOutboxStore, build_relay
from accounts.tests import test_outbox
from accounts.tests.test_outbox import QUEUES, celery_app, closed_port_url, read_messages
from django.db import connections

from common import events
from common.testing import relays_drain_together

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

amqp_url = test_outbox.amqp_url  # the run's vhost, its queues purged before and after

PASSES = 200  # more than enough passes for 5-event batches; a relay stops when drained


def write_events(count: int) -> list[dict[str, Any]]:
    envelopes = [
        events.make_envelope(
            events.USER_DELETED, user_id=str(index), data={"username": f"gone-{index}"}
        )
        for index in range(count)
    ]
    OutboxEvent.objects.bulk_create(
        OutboxEvent(event_id=uuid.UUID(e["event_id"]), envelope=e) for e in envelopes
    )
    return envelopes


def relay(broker_url: str) -> Any:
    # batch_size from the settings (5 here): several passes each, so the two interleave.
    return build_relay(
        app=celery_app(broker_url), store=OrmOutboxStore(), grace_seconds=0, interval=0.1
    )


def drain_together(relays: list[Any]) -> list[list[tuple[int, str]]]:
    return relays_drain_together(relays, passes=PASSES, after=connections.close_all)


@pytest.fixture
def small_batches(settings):
    settings.OUTBOX_RELAY_BATCH_SIZE = 5


def test_two_relays_drain_one_outbox_without_losing_an_event(amqp_url, small_batches):
    written = write_events(30)
    passes = drain_together([relay(amqp_url), relay(amqp_url)])

    assert not OutboxEvent.objects.exists()
    by_id = {envelope["event_id"]: envelope for envelope in written}
    published = sum(n for relay_passes in passes for n, _ in relay_passes)
    for queue in QUEUES:  # UserDeleted goes to analysis and to playlist
        messages = read_messages(amqp_url, queue)
        counts = Counter(envelope["event_id"] for _, envelope in messages)
        assert set(counts) == set(by_id), queue.name  # none lost, no stranger
        for task, envelope in messages:  # a duplicate is the same event
            assert envelope == by_id[envelope["event_id"]]
            assert (
                task
                == {
                    events.ANALYSIS_QUEUE_NAME: events.ANALYSIS_TASK,
                    events.PLAYLIST_QUEUE_NAME: events.PLAYLIST_TASK,
                }[queue.name]
            )
        assert len(messages) == published  # one message per queue per publish
        print(
            f"two relays, {queue.name}: {len(by_id)} events, {len(messages)} messages "
            f"({len(messages) - len(by_id)} duplicates); passes {[len(p) for p in passes]}"
        )
    assert all(relay_passes[-1][1] == "drained" for relay_passes in passes)


def test_a_relay_whose_broker_is_down_does_not_hold_up_the_other(amqp_url, small_batches):
    written = write_events(12)
    healthy_passes, broken_passes = drain_together([relay(amqp_url), relay(closed_port_url())])

    assert broken_passes[-1] == (0, "failed")
    assert healthy_passes[-1][1] == "drained"
    assert not OutboxEvent.objects.exists()
    for queue in QUEUES:
        ids = [envelope["event_id"] for _, envelope in read_messages(amqp_url, queue)]
        assert sorted(ids) == sorted(e["event_id"] for e in written)  # each exactly once
