"""Two outbox relays draining one playlist outbox at once (Kubernetes runs two replicas).

The decision (docs/kubernetes.md, "Relays with more than one replica"): no lease. Both relays
may publish the same event; each forgets an event only after the broker confirmed it, and the
consumers count an event once by its event_id. So two relays lose nothing, leave nothing
behind, and only ever duplicate. These tests drive the public relay API (build_relay,
run_once) against the real RabbitMQ vhost of the run.
"""

from __future__ import annotations

import socket
from collections import Counter
from typing import Any

import pytest

from common.events import ANALYSIS_QUEUE, PLAYLIST_DELETED
from common.testing import relays_drain_together
from playlists import services
from playlists.relay import build_relay
from playlists.tests.conftest import pending_envelopes

pytestmark = pytest.mark.integration

PASSES = 200  # more than enough passes for 5-event batches; a relay stops when drained


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"amqp://guest:guest@127.0.0.1:{port}//"


def write_events(owners: int = 4, per_owner: int = 6) -> list[dict[str, Any]]:
    """Creations, renames and deletions (tombstones) in the outbox; the envelopes written."""
    for index in range(owners):
        owner = f"relay-owner-{index}"
        made = [
            services.playlist_create(owner_id=owner, name=f"p{n}", tracks=[{"title": "t"}])
            for n in range(per_owner)
        ]
        services.playlist_update(
            owner_id=owner, playlist_id=str(made[0].id), changes={"name": "renamed"}
        )
        services.playlist_delete(owner_id=owner, playlist_id=str(made[1].id))
    return pending_envelopes()


def drain_together(relays: list[Any]) -> list[list[tuple[int, str]]]:
    return relays_drain_together(relays, passes=PASSES)


@pytest.fixture
def small_batches(settings):
    # Batches of 5: each relay makes several passes, so the two interleave on one outbox.
    settings.PLAYLIST_RELAY_BATCH_SIZE = 5


def test_two_relays_drain_one_outbox_without_losing_an_event(
    amqp_url, queues, settings, small_batches
):
    settings.CELERY_BROKER_URL = amqp_url
    written = write_events()
    assert len(written) == 4 * (6 + 2)
    relays = [build_relay(broker_url=amqp_url, grace_seconds=0) for _ in range(2)]
    passes = drain_together(relays)

    assert pending_envelopes() == []  # nothing left behind, tombstones included
    messages = queues.take(ANALYSIS_QUEUE)
    by_id = {envelope["event_id"]: envelope for envelope in written}
    counts = Counter(message["envelope"]["event_id"] for message in messages)
    assert set(counts) == set(by_id)  # every event reached the broker, no stranger
    for message in messages:  # a duplicate is the same event, byte for byte
        assert message["envelope"] == by_id[message["envelope"]["event_id"]]
        assert message["delivery_mode"] == 2
    published = sum(n for relay_passes in passes for n, _ in relay_passes)
    assert published == len(messages)  # every publish a relay counted is on the queue
    assert all(relay_passes[-1][1] == "drained" for relay_passes in passes)
    duplicates = len(messages) - len(by_id)
    print(
        f"two relays: {len(by_id)} events, {len(messages)} messages "
        f"({duplicates} duplicates); passes {[len(p) for p in passes]}"
    )


def test_a_relay_whose_broker_is_down_does_not_hold_up_the_other(
    amqp_url, queues, settings, small_batches
):
    settings.CELERY_BROKER_URL = amqp_url
    written = write_events(owners=2, per_owner=3)
    healthy = build_relay(broker_url=amqp_url, grace_seconds=0)
    broken = build_relay(broker_url=closed_port_url(), grace_seconds=0)
    healthy_passes, broken_passes = drain_together([healthy, broken])

    assert broken_passes[-1] == (0, "failed")  # it keeps every event it could not publish
    assert healthy_passes[-1][1] == "drained"
    assert pending_envelopes() == []
    messages = queues.take(ANALYSIS_QUEUE)
    assert {m["envelope"]["event_id"] for m in messages} == {e["event_id"] for e in written}
    assert len(messages) == len(written)  # the broken relay published nothing


def test_an_event_deleted_by_one_relay_is_harmless_to_the_other(
    amqp_url, queues, settings, small_batches
):
    """The second relay forgets an event the first already forgot: no error, no resurrection."""
    settings.CELERY_BROKER_URL = amqp_url
    playlist = services.playlist_create(owner_id="relay-tomb", name="gone")
    services.playlist_delete(owner_id="relay-tomb", playlist_id=str(playlist.id))
    first, second = (build_relay(broker_url=amqp_url, grace_seconds=0) for _ in range(2))
    assert first.run_once() == (2, "drained")
    assert second.run_once() == (0, "drained")
    assert pending_envelopes() == []
    types = Counter(m["envelope"]["type"] for m in queues.take(ANALYSIS_QUEUE))
    assert types[PLAYLIST_DELETED] == 1
