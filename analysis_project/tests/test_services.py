"""event_process: each event type changes exactly the right counters, once."""

from __future__ import annotations

import io
import threading
import uuid
from datetime import timedelta
from unittest import mock

import pytest
from analysis.models import DeletedUser, GenrePlays, ProcessedEvent, UserGenrePlays, UserStats
from analysis.services import (
    ERROR_USER_ID_TOO_LONG,
    event_parse,
    event_process,
    events_process,
    genre_normalize,
)
from django.core.management import call_command
from django.db import OperationalError, connections
from django.utils import timezone
from prometheus_client import REGISTRY

from common.events import (
    PLAYLIST_CREATED,
    PLAYLIST_DELETED,
    PLAYLIST_UPDATED,
    TRACK_PLAYED,
    USER_DELETED,
    InvalidEnvelope,
    parse_occurred_at,
)
from tests.factories import envelope

pytestmark = pytest.mark.django_db


def stats(user_id: str = "u1") -> dict[str, object]:
    row = UserStats.objects.get(user_id=user_id)
    return {
        "created": row.playlists_created,
        "deleted": row.playlists_deleted,
        "active": row.playlists_active,
        "plays": row.plays,
    }


def processed(event_type: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "analysis_events_processed_total", {"type": event_type, "outcome": outcome}
    )
    return value or 0.0


def test_playlist_created_counts_created_and_active(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        assert event_process(envelope=envelope(PLAYLIST_CREATED, playlist_id="p1")) == "ok"
    assert stats() == {"created": 1, "deleted": 0, "active": 1, "plays": 0}
    assert not UserGenrePlays.objects.exists()
    assert not GenrePlays.objects.exists()
    assert ProcessedEvent.objects.count() == 1


def test_playlist_deleted_counts_deleted_and_lowers_active():
    event_process(envelope=envelope(PLAYLIST_CREATED))
    event_process(envelope=envelope(PLAYLIST_CREATED))
    event_process(envelope=envelope(PLAYLIST_DELETED))
    assert stats() == {"created": 2, "deleted": 1, "active": 1, "plays": 0}


def test_delete_before_create_ends_exact_whatever_the_order():
    # Redelivery can reorder events: the stored sum goes to -1 and back, never clamped.
    event_process(envelope=envelope(PLAYLIST_DELETED))
    assert stats()["active"] == -1
    event_process(envelope=envelope(PLAYLIST_CREATED))
    assert stats() == {"created": 1, "deleted": 1, "active": 0, "plays": 0}


def test_track_played_counts_plays_user_genre_and_overall_genre():
    event_process(envelope=envelope(TRACK_PLAYED, "u1", genre="  Rock "))
    event_process(envelope=envelope(TRACK_PLAYED, "u1", genre="rock"))
    event_process(envelope=envelope(TRACK_PLAYED, "u2", genre="Jazz"))
    event_process(envelope=envelope(TRACK_PLAYED, "u2", title="no genre"))
    assert stats("u1") == {"created": 0, "deleted": 0, "active": 0, "plays": 2}
    assert stats("u2")["plays"] == 2
    assert dict(UserGenrePlays.objects.filter(user_id="u1").values_list("genre", "plays")) == {
        "rock": 2
    }
    assert dict(UserGenrePlays.objects.filter(user_id="u2").values_list("genre", "plays")) == {
        "jazz": 1,
        "unknown": 1,
    }
    assert dict(GenrePlays.objects.values_list("genre", "plays")) == {
        "rock": 2,
        "jazz": 1,
        "unknown": 1,
    }


def test_track_genre_may_come_inside_the_track():
    event_process(envelope=envelope(TRACK_PLAYED, track={"title": "x", "genre": "Pop"}))
    assert GenrePlays.objects.get().genre == "pop"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (" Hip  Hop ", "hip hop"),
        ("", "unknown"),
        ("   ", "unknown"),
        (None, "unknown"),
        (42, "unknown"),
        ("x" * 300, "x" * 100),
    ],
)
def test_genre_normalize(raw, expected):
    assert genre_normalize(raw) == expected


def test_playlist_updated_only_touches_last_event_at():
    first = envelope(PLAYLIST_UPDATED)
    event_process(envelope=first)
    row = UserStats.objects.get(user_id="u1")
    assert stats() == {"created": 0, "deleted": 0, "active": 0, "plays": 0}
    assert row.last_event_at is not None
    older = envelope(PLAYLIST_UPDATED)
    older["occurred_at"] = "2020-01-01T00:00:00Z"
    event_process(envelope=older)
    # An older event arriving late does not move last_event_at back.
    assert UserStats.objects.get(user_id="u1").last_event_at == row.last_event_at


def test_user_deleted_removes_the_users_rows_but_keeps_overall_genres():
    event_process(envelope=envelope(PLAYLIST_CREATED, "u1"))
    event_process(envelope=envelope(TRACK_PLAYED, "u1", genre="rock"))
    event_process(envelope=envelope(TRACK_PLAYED, "u2", genre="rock"))
    event_process(envelope=envelope(USER_DELETED, "u1"))
    assert not UserStats.objects.filter(user_id="u1").exists()
    assert not UserGenrePlays.objects.filter(user_id="u1").exists()
    assert UserStats.objects.filter(user_id="u2").exists()
    assert GenrePlays.objects.get(genre="rock").plays == 2


def test_same_envelope_twice_counts_once(django_capture_on_commit_callbacks):
    event = envelope(TRACK_PLAYED, genre="rock")
    before = processed(TRACK_PLAYED, "duplicate")
    with django_capture_on_commit_callbacks(execute=True):
        assert event_process(envelope=event) == "ok"
    with django_capture_on_commit_callbacks(execute=True):
        assert event_process(envelope=dict(event)) == "duplicate"
    assert stats()["plays"] == 1
    assert GenrePlays.objects.get().plays == 1
    assert ProcessedEvent.objects.count() == 1
    assert processed(TRACK_PLAYED, "duplicate") == before + 1


@pytest.mark.parametrize(
    "mutate",
    [
        lambda e: e.pop("event_id"),
        lambda e: e.update(type="PlaylistRenamed"),
        lambda e: e.update(event_id="not-a-uuid"),
        lambda e: e.update(data=[1, 2]),
        lambda e: e.update(occurred_at="yesterday"),
        lambda e: e.update(user_id=""),
        lambda e: e.update(version=2),
    ],
)
def test_invalid_envelopes_raise_and_change_nothing(mutate):
    event = envelope(PLAYLIST_CREATED)
    mutate(event)
    with pytest.raises(InvalidEnvelope):
        event_process(envelope=event)
    assert not UserStats.objects.exists()
    assert not ProcessedEvent.objects.exists()


def test_too_long_user_id_is_invalid():
    with pytest.raises(InvalidEnvelope, match=ERROR_USER_ID_TOO_LONG):
        event_process(envelope=envelope(PLAYLIST_CREATED, "u" * 65))
    assert not ProcessedEvent.objects.exists()


def test_non_dict_message_is_invalid():
    with pytest.raises(InvalidEnvelope):
        event_process(envelope=["not", "an", "envelope"])


@pytest.mark.django_db(transaction=True)
def test_concurrent_first_events_of_a_user_lose_no_update():
    """Threads with their own connections race on the insert of the same new rows."""
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def play() -> None:
        try:
            barrier.wait(10)
            event_process(envelope=envelope(TRACK_PLAYED, "racer", genre="Rock"))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=play) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert UserStats.objects.get(user_id="racer").plays == 8
    assert UserGenrePlays.objects.get(user_id="racer", genre="rock").plays == 8
    assert GenrePlays.objects.get(genre="rock").plays == 8


@pytest.mark.django_db(transaction=True)
def test_concurrent_redeliveries_of_one_event_count_once():
    event = envelope(PLAYLIST_CREATED, "twin")
    event["event_id"] = str(uuid.uuid4())
    barrier = threading.Barrier(6)
    outcomes: list[str] = []

    def deliver() -> None:
        try:
            barrier.wait(10)
            outcomes.append(event_process(envelope=dict(event)))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=deliver) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["duplicate"] * 5 + ["ok"]
    assert stats("twin") == {"created": 1, "deleted": 0, "active": 1, "plays": 0}


def test_prune_forgets_only_old_processed_events():
    old, recent = envelope(PLAYLIST_CREATED), envelope(PLAYLIST_CREATED)
    event_process(envelope=old)
    event_process(envelope=recent)
    ProcessedEvent.objects.filter(event_id=old["event_id"]).update(
        processed_at=timezone.now() - timedelta(days=31)
    )
    out = io.StringIO()
    call_command("prune_processed_events", "--days", "30", stdout=out)
    assert "removed 1 " in out.getvalue()
    assert list(ProcessedEvent.objects.values_list("event_id", flat=True)) == [
        uuid.UUID(recent["event_id"])
    ]
    assert stats()["created"] == 2  # counters are untouched


def test_a_batch_counts_like_its_events_one_by_one_in_one_transaction(
    django_capture_on_commit_callbacks, django_assert_max_num_queries
):
    """events_process: duplicates (earlier and within the batch) count once, a user deletion
    applies in order, last_event_at keeps the latest time, the cache keys go in one call."""
    seen = envelope(TRACK_PLAYED, "u1", genre="rock")
    event_process(envelope=seen)
    created = envelope(PLAYLIST_CREATED, "u2")
    late = envelope(PLAYLIST_UPDATED, "u2")
    late["occurred_at"] = "2020-01-01T00:00:00Z"
    deleted = envelope(PLAYLIST_DELETED, "u2")
    batch = [
        dict(seen),  # recorded before: duplicate
        envelope(TRACK_PLAYED, "u1", genre=" Rock "),
        created,
        dict(created),  # twice in the same batch: one counts
        late,
        envelope(TRACK_PLAYED, "u3", genre="jazz"),
        envelope(USER_DELETED, "u3"),  # after u3's play, before the next one
        envelope(TRACK_PLAYED, "u3", genre="pop"),  # a deleted user's: recorded, not counted
        deleted,
    ]
    parsed = [event_parse(envelope=event) for event in batch]
    before = processed(PLAYLIST_CREATED, "duplicate")
    with (
        mock.patch("analysis.services.cache_invalidate") as invalidate,
        django_capture_on_commit_callbacks(execute=True),
        # SAVEPOINT, the event ids, the users' locks, the deleted users, 3 upserts, the
        # deletion (tombstone and 2), 1 upsert, RELEASE
        django_assert_max_num_queries(15),
    ):
        outcomes = events_process(events=parsed)
    assert outcomes == [
        "duplicate",
        "ok",
        "ok",
        "duplicate",
        "ok",
        "ok",
        "ok",
        "user_deleted",
        "ok",
    ]
    assert processed(PLAYLIST_CREATED, "duplicate") == before + 1
    assert stats("u1")["plays"] == 2
    assert stats("u2") == {"created": 1, "deleted": 1, "active": 0, "plays": 0}
    # The latest occurred_at of the batch, not the late event's.
    assert UserStats.objects.get(user_id="u2").last_event_at == parse_occurred_at(
        deleted["occurred_at"]
    )
    assert not UserStats.objects.filter(user_id="u3").exists()
    assert not UserGenrePlays.objects.filter(user_id="u3").exists()
    assert dict(GenrePlays.objects.values_list("genre", "plays")) == {
        "rock": 2,
        "jazz": 1,
    }
    assert ProcessedEvent.objects.count() == 8
    invalidate.assert_called_once()
    assert set(invalidate.call_args.kwargs["keys"]) == {
        key for event in parsed for key in event.cache_keys()
    }


def test_a_batch_that_fails_commits_nothing():
    good = envelope(TRACK_PLAYED, "u1", genre="rock")
    parsed = [event_parse(envelope=good)]
    with (
        mock.patch("analysis.services._increments", side_effect=OperationalError("gone")),
        pytest.raises(OperationalError),
    ):
        events_process(events=parsed)
    assert not ProcessedEvent.objects.exists()
    assert events_process(events=parsed) == ["ok"]
    assert stats()["plays"] == 1


def test_events_after_a_user_deletion_are_recorded_but_never_counted(
    django_capture_on_commit_callbacks,
):
    """Late events of a deleted user (a play published after the deletion, a broker outage
    delivering out of order) recreate nothing about the user."""
    event_process(envelope=envelope(PLAYLIST_CREATED, "gone", genre="rock"))
    event_process(envelope=envelope(USER_DELETED, "gone"))
    late = [
        envelope(PLAYLIST_CREATED, "gone"),
        envelope(TRACK_PLAYED, "gone", genre="rock"),
        envelope(PLAYLIST_DELETED, "gone"),
    ]
    before = processed(TRACK_PLAYED, "user_deleted")
    with django_capture_on_commit_callbacks(execute=True):
        assert [event_process(envelope=item) for item in late] == ["user_deleted"] * 3
    assert [event_process(envelope=item) for item in late] == ["duplicate"] * 3  # redelivered
    assert processed(TRACK_PLAYED, "user_deleted") == before + 1
    assert not UserStats.objects.filter(user_id="gone").exists()
    assert not UserGenrePlays.objects.filter(user_id="gone").exists()
    assert ProcessedEvent.objects.filter(user_id="gone").count() == 5
    assert DeletedUser.objects.filter(user_id="gone").exists()
    event_process(envelope=envelope(TRACK_PLAYED, "other", genre="rock"))  # others still count
    assert UserStats.objects.get(user_id="other").plays == 1


def test_a_batch_counts_what_came_before_the_deletion_and_ignores_what_came_after():
    batch = [
        event_parse(envelope=envelope(TRACK_PLAYED, "mixed", genre="jazz")),
        event_parse(envelope=envelope(USER_DELETED, "mixed")),
        event_parse(envelope=envelope(TRACK_PLAYED, "mixed", genre="jazz")),
        event_parse(envelope=envelope(TRACK_PLAYED, "kept", genre="jazz")),
    ]
    assert events_process(events=batch) == ["ok", "ok", "user_deleted", "ok"]
    assert not UserStats.objects.filter(user_id="mixed").exists()
    assert GenrePlays.objects.get(genre="jazz").plays == 2  # history before the deletion stays
    assert UserStats.objects.get(user_id="kept").plays == 1


@pytest.mark.django_db(transaction=True)
def test_a_deletion_committing_while_a_batch_counts_its_user_wins():
    """A deletion holds its user's lock until it commits: a batch counting that user waits
    for it, then sees the tombstone (without the lock it would recreate the user's rows)."""
    done: list[str] = []
    deleter = connections.create_connection("default")
    try:
        with deleter.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", ["racing"])

        def play() -> None:
            try:
                done.append(event_process(envelope=envelope(TRACK_PLAYED, "racing", genre="pop")))
            finally:
                connections.close_all()

        worker = threading.Thread(target=play)
        worker.start()
        worker.join(1.0)
        assert worker.is_alive(), "the batch must wait for the deletion's lock"
        with deleter.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {DeletedUser._meta.db_table} (user_id, deleted_at) "
                "VALUES (%s, now())",
                ["racing"],
            )
            cursor.execute("COMMIT")
        worker.join(30)
    finally:
        deleter.close()
    assert done == ["user_deleted"]
    assert not UserStats.objects.filter(user_id="racing").exists()
