"""Real worker processes on the run's RabbitMQ vhost, PostgreSQL database and Redis."""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter

import psycopg
import pytest
from analysis.models import GenrePlays, ProcessedEvent, UserGenrePlays, UserStats
from django.test import override_settings
from kombu import Producer

from common.celery_utils import publish_envelope
from common.events import (
    ANALYSIS_DLQ,
    ANALYSIS_QUEUE,
    ANALYSIS_TASK,
    EVENTS_EXCHANGE,
    PLAYLIST_CREATED,
    PLAYLIST_DELETED,
    PLAYLIST_UPDATED,
    TRACK_PLAYED,
)
from common.testing import django_test_database_url
from tests.conftest import free_port, publisher_app, read_queue, wait_for
from tests.factories import envelope

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

GENRES = ["rock", "jazz", "pop", "Hip Hop", " Rock ", None]


def random_events(count: int, users: int, seed: int) -> tuple[list[dict], dict]:
    """Events of every order-independent type, and the counters they must produce."""
    rng = random.Random(seed)
    user_ids = [f"user-{n}" for n in range(users)]
    expected: dict = {
        "stats": {u: Counter() for u in user_ids},
        "user_genres": Counter(),
        "genres": Counter(),
    }
    events = []
    for index in range(count):
        user = user_ids[index % users]
        kind = rng.choice(
            [
                PLAYLIST_CREATED,
                PLAYLIST_CREATED,
                PLAYLIST_DELETED,
                PLAYLIST_UPDATED,
                TRACK_PLAYED,
                TRACK_PLAYED,
                TRACK_PLAYED,
            ]
        )
        stats = expected["stats"][user]
        if kind == TRACK_PLAYED:
            raw = rng.choice(GENRES)
            genre = " ".join(raw.split()).lower() if raw else "unknown"
            events.append(envelope(kind, user, genre=raw, title=f"t{index}"))
            stats["plays"] += 1
            expected["user_genres"][(user, genre)] += 1
            expected["genres"][genre] += 1
        else:
            events.append(envelope(kind, user, playlist_id=f"p{index}"))
            stats["created"] += kind == PLAYLIST_CREATED
            stats["deleted"] += kind == PLAYLIST_DELETED
            stats["active"] += (kind == PLAYLIST_CREATED) - (kind == PLAYLIST_DELETED)
    return events, expected


def assert_counts(expected: dict) -> None:
    for user, stats in expected["stats"].items():
        row = UserStats.objects.get(user_id=user)
        got = {
            "created": row.playlists_created,
            "deleted": row.playlists_deleted,
            "active": row.playlists_active,
            "plays": row.plays,
        }
        want = {key: stats[key] for key in ("created", "deleted", "active", "plays")}
        assert got == want, user
    user_genres = {(r.user_id, r.genre): r.plays for r in UserGenrePlays.objects.all()}
    assert user_genres == dict(expected["user_genres"])
    assert dict(GenrePlays.objects.values_list("genre", "plays")) == dict(expected["genres"])
    # Each genre's distinct users (the global leaderboard's threshold), exact under concurrency.
    distinct = Counter(genre for (_, genre) in expected["user_genres"])
    assert dict(GenrePlays.objects.values_list("genre", "users")) == dict(distinct)


def processed_count() -> int:
    return ProcessedEvent.objects.count()


def test_two_workers_consume_1000_events_for_10_users_exactly(start_worker, publisher):
    events, expected = random_events(1000, users=10, seed=1)
    first, second = start_worker("one"), start_worker("two")
    redelivered = random.Random(2).sample(events, 50)
    for event in events + redelivered:  # the 50 copies must count once
        publish_envelope(publisher, event)
    wait_for(lambda: processed_count() == 1000, timeout=90, what="1000 events processed")

    def total(outcome: str) -> float:
        return sum(
            worker.sample("analysis_events_processed_total", type=event_type, outcome=outcome)
            for worker in (first, second)
            for event_type in (PLAYLIST_CREATED, PLAYLIST_DELETED, PLAYLIST_UPDATED, TRACK_PLAYED)
        )

    wait_for(
        lambda: total("ok") == 1000 and total("duplicate") == 50,
        timeout=30,
        what="all 1050 deliveries",
    )
    assert_counts(expected)
    # Both processes did part of the work (so the exact counts above were concurrent).
    for worker in (first, second):
        assert (
            worker.sample("analysis_events_processed_total", type=TRACK_PLAYED, outcome="ok") > 0
        ), worker.name
        assert worker.sample("analysis_event_lag_seconds_count") > 0
        # CPU and memory of the worker's whole tree (main process and pool child).
        assert worker.sample("process_tree_processes") >= 2
        assert worker.sample("process_resident_memory_bytes") > 0


def test_bad_messages_are_dead_lettered_and_the_next_event_is_processed(
    start_worker, publisher, queues
):
    worker = start_worker("dlq")
    unknown = envelope(PLAYLIST_CREATED, "u1")
    unknown["type"] = "PlaylistRenamed"
    publisher.send_task(
        ANALYSIS_TASK,
        args=[{"not": "an envelope"}],
        queue=ANALYSIS_QUEUE,
        exchange=EVENTS_EXCHANGE,
        routing_key=ANALYSIS_QUEUE.routing_key,
    )
    publisher.send_task(
        ANALYSIS_TASK,
        args=[unknown],
        queue=ANALYSIS_QUEUE,
        exchange=EVENTS_EXCHANGE,
        routing_key=ANALYSIS_QUEUE.routing_key,
        headers={"event_id": unknown["event_id"]},
    )
    producer = Producer(queues.default_channel)
    producer.publish(
        b"\x00{not json",
        exchange=EVENTS_EXCHANGE,
        routing_key=ANALYSIS_QUEUE.routing_key,
        content_type="application/json",
        content_encoding="utf-8",
    )
    publisher.send_task(
        "analysis.no_such_task",
        args=[],
        queue=ANALYSIS_QUEUE,
        exchange=EVENTS_EXCHANGE,
        routing_key=ANALYSIS_QUEUE.routing_key,
    )
    good = envelope(PLAYLIST_CREATED, "u1")
    publish_envelope(publisher, good)

    wait_for(
        lambda: ProcessedEvent.objects.filter(event_id=good["event_id"]).exists(),
        timeout=30,
        what="the good event after the bad ones",
    )
    dead = read_queue(queues, ANALYSIS_DLQ, expect=4)
    assert len(dead) == 4
    for message in dead:
        assert message.headers["x-death"][0]["reason"] == "rejected"
        assert message.headers["x-death"][0]["queue"] == ANALYSIS_QUEUE.name
    bodies = [
        body.decode() if isinstance(body := message.body, bytes) else body for message in dead
    ]
    assert "\x00{not json" in bodies
    decoded = [json.loads(body) for body in bodies if body != "\x00{not json"]
    args = [body[0] for body in decoded]
    assert [{"not": "an envelope"}] in args
    assert [unknown] in args
    assert [] in args  # the unknown task
    assert UserStats.objects.get(user_id="u1").playlists_created == 1
    wait_for(
        lambda: (
            worker.sample(
                "analysis_events_processed_total", type="invalid", outcome="dead_lettered"
            )
            == 4
        ),
        timeout=10,
        what="dead_lettered metric",
    )
    log = worker.log()
    assert "invalid event dead-lettered: unknown event type 'PlaylistRenamed'" in log
    assert f"event_id={unknown['event_id']}" in log
    # Task headers put the publisher's ids on the worker's log lines.
    assert any(
        "counts updated" in line
        and f"event_id={good['event_id']}" in line
        and "request_id=req-test" in line
        and "user_id=u1" in line
        for line in log.splitlines()
    )


def test_worker_killed_with_sigkill_mid_batch_counts_exactly_after_restart(start_worker, publisher):
    events, expected = random_events(600, users=4, seed=3)
    worker = start_worker("victim")
    for event in events:
        publish_envelope(publisher, event)
    wait_for(lambda: processed_count() >= 60, timeout=60, what="part of the batch")
    worker.kill()
    done = processed_count()
    assert done < 600, "the batch finished before the kill; nothing was tested"
    start_worker("survivor")
    wait_for(lambda: processed_count() == 600, timeout=90, what="the rest after restart")
    assert_counts(expected)


def test_redis_failing_after_the_commit_neither_retries_nor_dead_letters(
    start_worker, publisher, queues
):
    """Redis down when the worker invalidates the cache after its commit: the event was counted,
    so it is acknowledged (no retry, nothing in the dead-letter queue), counted once, and the
    failed invalidation is logged and counted."""
    worker = start_worker(
        "no-redis",
        REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
        ANALYSIS_TASK_MAX_RETRIES="2",
        ANALYSIS_TASK_RETRY_BACKOFF="1",
        ANALYSIS_TASK_RETRY_BACKOFF_MAX="1",
    )
    event = envelope(TRACK_PLAYED, "u9", genre="rock")
    publish_envelope(publisher, event)

    def sample(outcome: str) -> float:
        return worker.sample("analysis_events_processed_total", type=TRACK_PLAYED, outcome=outcome)

    wait_for(lambda: sample("ok") == 1, timeout=30, what=f"ok metric in\n{worker.metrics()}")
    wait_for(
        lambda: worker.sample("analysis_cache_invalidation_failures_total") == 1,
        timeout=10,
        what=f"the invalidation failure metric in\n{worker.metrics()}",
    )
    # Longer than the retries and their backoff would have taken before the fix.
    assert read_queue(queues, ANALYSIS_DLQ, expect=1, timeout=6) == []
    assert (sample("ok"), sample("retried"), sample("duplicate"), sample("dead_lettered")) == (
        1,
        0,
        0,
        0,
    )
    assert UserStats.objects.get(user_id="u9").plays == 1
    assert GenrePlays.objects.get(genre="rock").plays == 1
    # Acknowledged: nothing left in the event queue for another worker to count again.
    worker.stop()
    assert read_queue(queues, ANALYSIS_QUEUE, expect=1, timeout=1) == []
    log = worker.log()
    assert "cache unavailable after the commit" in log
    assert "batch of 1 events failed" not in log


@override_settings(ANALYSIS_GENRE_MIN_USERS=1)  # one reader's play shows globally
def test_a_read_after_an_event_shows_the_new_value(start_worker, publisher, api, redis_url):
    worker = start_worker("cache")
    client = api("reader")
    assert client.get("/api/analysis").json()["plays"] == 0  # now cached
    assert client.get("/api/analysis/genres?scope=global").json() == []
    event = envelope(TRACK_PLAYED, "reader", genre="jazz")
    publish_envelope(publisher, event)
    publish_envelope(publisher, event)  # redelivered: still one play
    # Both deliveries finished (a batch counts its events after the cache invalidation).
    wait_for(
        lambda: (
            [
                worker.sample("analysis_events_processed_total", type=TRACK_PLAYED, outcome=outcome)
                for outcome in ("ok", "duplicate")
            ]
            == [1, 1]
        ),
        timeout=30,
        what="both deliveries",
    )
    assert client.get("/api/analysis").json()["plays"] == 1
    assert client.get("/api/analysis/genres?scope=global").json() == [{"genre": "jazz", "plays": 1}]
    assert ProcessedEvent.objects.get().event_id == uuid.UUID(event["event_id"])


def test_worker_on_the_redis_broker_counts_and_keeps_rejected_messages(launch_worker, redis_broker):
    """The single-machine broker (Celery's Redis transport) has no dead-lettering, so the
    worker copies rejected messages to the DLQ itself."""
    launch_worker(
        "redis",
        CELERY_BROKER_URL=redis_broker.url,
        CELERY_BROKER_KEY_PREFIX=redis_broker.prefix,
    )
    app = publisher_app("redis-publisher", redis_broker.url, global_keyprefix=redis_broker.prefix)
    bad = envelope(PLAYLIST_CREATED, "rd")
    bad["type"] = "PlaylistRenamed"
    app.send_task(
        ANALYSIS_TASK,
        args=[bad],
        queue=ANALYSIS_QUEUE,
        exchange=EVENTS_EXCHANGE,
        routing_key=ANALYSIS_QUEUE.routing_key,
    )
    good = envelope(PLAYLIST_CREATED, "rd")
    publish_envelope(app, good)
    wait_for(
        lambda: ProcessedEvent.objects.filter(event_id=good["event_id"]).exists(),
        timeout=30,
        what="the event over the Redis broker",
    )
    assert UserStats.objects.get(user_id="rd").playlists_created == 1
    with redis_broker.connection() as conn:
        dead = read_queue(conn, ANALYSIS_DLQ, expect=1, timeout=10)
    assert [message.payload for message in dead] == [bad]
    app.close()


def test_database_unreachable_retries_past_the_limit_and_dead_letters_nothing(
    start_worker, publisher, queues
):
    """A database that cannot be reached is waited for: the event
    retries beyond ANALYSIS_TASK_MAX_RETRIES and never reaches the dead-letter queue (the
    e2e faults suite counts it once the database is back)."""
    broken = start_worker(
        "nodb",
        DATABASE_URL=f"postgres://postgres@127.0.0.1:{free_port()}/nothing",
        ANALYSIS_TASK_MAX_RETRIES="1",
        ANALYSIS_TASK_RETRY_BACKOFF="1",
        ANALYSIS_TASK_RETRY_BACKOFF_MAX="1",
    )
    publish_envelope(publisher, envelope(TRACK_PLAYED, "u7", genre="pop"))

    def retried() -> float:
        return broken.sample(
            "analysis_events_processed_total", type=TRACK_PLAYED, outcome="retried"
        )

    wait_for(lambda: retried() >= 4, timeout=60, what=f"retries in\n{broken.metrics()}")
    assert read_queue(queues, ANALYSIS_DLQ, expect=1, timeout=1) == []
    assert (
        broken.sample("analysis_events_processed_total", type=TRACK_PLAYED, outcome="dead_lettered")
        == 0
    )
    assert "database unreachable" in broken.log()


def test_lock_timeout_retries_then_dead_letters_and_a_replay_counts_once(
    start_worker, publisher, queues
):
    """A table locked by another session: each attempt ends at DB_LOCK_TIMEOUT_MS (the worker
    is not stuck behind the lock), retries ANALYSIS_TASK_MAX_RETRIES times, then the event is
    dead-lettered; a replay once the lock is gone counts it once."""
    blocked = start_worker(
        "locked",
        DB_LOCK_TIMEOUT_MS="200",
        ANALYSIS_TASK_MAX_RETRIES="1",
        ANALYSIS_TASK_RETRY_BACKOFF="1",
        ANALYSIS_TASK_RETRY_BACKOFF_MAX="1",
    )
    event = envelope(TRACK_PLAYED, "u7", genre="pop")
    with psycopg.connect(django_test_database_url()) as holder:
        holder.execute(f"LOCK TABLE {ProcessedEvent._meta.db_table} IN ACCESS EXCLUSIVE MODE")
        publish_envelope(publisher, event)
        dead = read_queue(queues, ANALYSIS_DLQ, expect=1, timeout=40)
        holder.rollback()
    assert len(dead) == 1
    assert not ProcessedEvent.objects.exists()
    assert (
        blocked.sample("analysis_events_processed_total", type=TRACK_PLAYED, outcome="retried") == 1
    )
    assert "lock timeout" in blocked.log()
    blocked.stop()
    # An operator replays the dead letter once the lock is gone (twice, by mistake).
    replay = start_worker("replay")
    replayed = json.loads(dead[0].body)[0][0]
    publish_envelope(publisher, replayed)
    publish_envelope(publisher, replayed)
    wait_for(lambda: "duplicate event ignored" in replay.log(), timeout=30, what="both replays")
    assert UserStats.objects.get(user_id="u7").plays == 1
    assert GenrePlays.objects.get(genre="pop").plays == 1


def test_batching_switched_off_counts_one_message_at_a_time(start_worker, publisher):
    worker = start_worker("single", ANALYSIS_BATCH_SIZE="1")
    events, expected = random_events(40, users=3, seed=5)
    for event in [*events, events[0]]:
        publish_envelope(publisher, event)
    wait_for(lambda: processed_count() == 40, timeout=60, what="40 events processed")
    wait_for(
        lambda: worker.log().count(" succeeded in ") == 41,
        timeout=30,
        what="41 tasks run by the pool one by one",
    )
    assert_counts(expected)
