"""The event envelope: made once, validated strictly, routed to the right consumers."""

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from common import events

ROOT = Path(__file__).resolve().parents[2]


def test_make_envelope_has_every_field():
    envelope = events.make_envelope(
        events.PLAYLIST_CREATED, user_id=7, data={"playlist_id": "p"}, request_id="r1"
    )
    assert set(envelope) == {
        "event_id",
        "type",
        "version",
        "occurred_at",
        "user_id",
        "request_id",
        "data",
    }
    assert envelope["user_id"] == "7"
    uuid.UUID(envelope["event_id"])
    assert events.parse_occurred_at(envelope["occurred_at"]).utcoffset().total_seconds() == 0
    assert events.validate_envelope(envelope) is envelope


def test_unknown_type_cannot_be_made():
    with pytest.raises(events.InvalidEnvelope):
        events.make_envelope("PlaylistRenamed", user_id="1", data={})


@pytest.mark.parametrize(
    "change",
    [
        {"type": "Nope"},
        {"version": 2},
        {"event_id": "not-a-uuid"},
        {"user_id": ""},
        {"user_id": 5},
        {"data": []},
        {"occurred_at": "yesterday"},
        {"occurred_at": "2026-01-01T00:00:00"},  # no time zone
    ],
)
def test_validate_rejects_bad_fields(change):
    envelope = events.make_envelope(events.TRACK_PLAYED, user_id="1", data={})
    envelope.update(change)
    with pytest.raises(events.InvalidEnvelope):
        events.validate_envelope(envelope)


@pytest.mark.parametrize("message", [None, "text", [], {"type": "PlaylistCreated"}])
def test_validate_rejects_non_envelopes(message):
    with pytest.raises(events.InvalidEnvelope):
        events.validate_envelope(message)


def test_routes_cover_every_type_and_user_deleted_fans_out():
    assert set(events.ROUTES) == set(events.EVENT_TYPES)
    queues = {queue.name for _, queue in events.ROUTES[events.USER_DELETED]}
    assert queues == {events.ANALYSIS_QUEUE_NAME, events.PLAYLIST_QUEUE_NAME}


def test_event_queues_are_quorum_queues_with_a_delivery_limit_and_a_dlq():
    for queue, dlq in (
        (events.ANALYSIS_QUEUE, events.ANALYSIS_DLQ),
        (events.PLAYLIST_QUEUE, events.PLAYLIST_DLQ),
    ):
        assert queue.queue_arguments == {
            "x-queue-type": "quorum",
            "x-delivery-limit": events.EVENT_DELIVERY_LIMIT,
            "x-dead-letter-exchange": events.DLX_EXCHANGE.name,
            "x-dead-letter-routing-key": dlq.name,
        }
        assert queue.durable and dlq.durable
        assert dlq.exchange == events.DLX_EXCHANGE and dlq.routing_key == dlq.name
    assert events.EVENT_QUEUES == (events.ANALYSIS_QUEUE, events.PLAYLIST_QUEUE)
    assert events.EVENT_DELIVERY_LIMIT == 5  # the default


@pytest.mark.parametrize(("value", "limit"), [("9", 9), ("0", 1)])
def test_the_delivery_limit_comes_from_the_environment(value, limit):
    code = (
        "from common import events;print(events.ANALYSIS_QUEUE.queue_arguments['x-delivery-limit'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "EVENT_DELIVERY_LIMIT": value, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == str(limit)
