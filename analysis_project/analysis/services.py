"""Writes of the analysis service: count one event, exactly once."""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, models, transaction
from django.utils import timezone

from analysis import metrics
from analysis.cache import (
    GLOBAL_GENRES_KEY,
    cache_invalidate,
    summary_key,
    user_genres_key,
)
from analysis.models import (
    GENRE_MAX_LENGTH,
    USER_ID_MAX_LENGTH,
    DeletedUser,
    GenrePlays,
    ProcessedEvent,
    UserGenrePlays,
    UserStats,
)
from common import events, log_context
from common import events as events_module
from common.events import InvalidEnvelope, parse_occurred_at, validate_envelope

logger = logging.getLogger(__name__)

UNKNOWN_GENRE = "unknown"
ERROR_USER_ID_TOO_LONG = f"user_id must be at most {USER_ID_MAX_LENGTH} characters"


def genre_normalize(value: Any) -> str:
    """``" Rock "`` -> ``"rock"``; missing, empty or non-string -> ``"unknown"``."""
    if not isinstance(value, str):
        return UNKNOWN_GENRE
    genre = " ".join(value.split()).lower()[:GENRE_MAX_LENGTH]
    return genre or UNKNOWN_GENRE


def _track_genre(data: dict[str, Any]) -> str:
    genre = data.get("genre")
    track = data.get("track")
    if genre is None and isinstance(track, dict):
        genre = track.get("genre")
    return genre_normalize(genre)


def _user_deleted(*, user_id: str, now: datetime) -> None:
    # Overall genre totals keep the plays: they are history, not personal data. The user no
    # longer counts among each genre's distinct users (GenrePlays.users). The tombstone makes
    # every later event of the user a no-op (see _apply).
    DeletedUser.objects.bulk_create(
        [DeletedUser(user_id=user_id, deleted_at=now)], ignore_conflicts=True
    )
    UserStats.objects.filter(user_id=user_id).delete()
    meta = UserGenrePlays._meta
    user_column = _quote(_field(UserGenrePlays, "user_id").column)
    genre_column = _quote(_field(UserGenrePlays, "genre").column)
    # One statement: a row another worker inserts meanwhile is either deleted and returned
    # (so decremented) or left alone, never deleted uncounted.
    sql = (
        f"DELETE FROM {_quote(meta.db_table)} WHERE {user_column} = %s "  # noqa: S608
        f"RETURNING {genre_column}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [user_id])
        genres = sorted({genre for (genre,) in cursor.fetchall()})
    if genres:
        _upsert(
            GenrePlays,
            ("genre",),
            [(genre, 0, -1) for genre in genres],
            columns=("plays", "users"),
            add=("plays", "users"),
        )


# Keys an event type touches, also invalidated on a duplicate: a redelivery after a worker
# died between the commit and the invalidation completes it.
_KEYS: dict[str, Callable[[str], list[str]]] = {
    events.PLAYLIST_CREATED: lambda user_id: [summary_key(user_id)],
    events.PLAYLIST_UPDATED: lambda user_id: [summary_key(user_id)],
    events.PLAYLIST_DELETED: lambda user_id: [summary_key(user_id)],
    events.TRACK_PLAYED: lambda user_id: [
        summary_key(user_id),
        user_genres_key(user_id),
        GLOBAL_GENRES_KEY,
    ],
    events.USER_DELETED: lambda user_id: [
        summary_key(user_id),
        user_genres_key(user_id),
        GLOBAL_GENRES_KEY,  # the user no longer counts towards a genre's distinct users
    ],
}


@dataclass(frozen=True)
class ParsedEvent:
    """A validated envelope, ready to count."""

    event_id: uuid.UUID
    event_type: str
    user_id: str
    occurred_at: datetime
    data: dict[str, Any]
    request_id: str | None = None

    def cache_keys(self) -> list[str]:
        """Cache keys the event touches."""
        return _KEYS[self.event_type](self.user_id)


def event_parse(*, envelope: Any) -> ParsedEvent:
    """Validate ``envelope``; raises InvalidEnvelope for a malformed one or an unknown type."""
    envelope = validate_envelope(envelope)
    user_id: str = envelope["user_id"]
    if len(user_id) > USER_ID_MAX_LENGTH:
        raise InvalidEnvelope(ERROR_USER_ID_TOO_LONG)
    request_id = envelope.get("request_id")
    return ParsedEvent(
        event_id=uuid.UUID(str(envelope["event_id"])),
        event_type=envelope["type"],
        user_id=user_id,
        occurred_at=parse_occurred_at(str(envelope["occurred_at"])),
        data=envelope["data"],
        request_id=request_id if isinstance(request_id, str) and request_id else None,
    )


def event_process(*, envelope: Any) -> str:
    """Count one event envelope exactly once; return ``"ok"`` or ``"duplicate"``.

    Raises InvalidEnvelope for a malformed envelope or an unknown type, and database/cache
    errors for the caller to retry (see :func:`events_process`).
    """
    return events_process(events=[event_parse(envelope=envelope)])[0]


def events_process(*, events: Sequence[ParsedEvent]) -> list[str]:
    """Count a batch of parsed events exactly once, in ONE transaction; outcomes in order.

    The records of the events (a bulk insert that skips event ids already recorded, so a
    second delivery of an ``event_id`` changes nothing) and their counter changes (one
    atomic upsert per table, ``col = col + n``) commit together. Right after the commit the
    cache keys of every event of the batch (duplicates too: a redelivery of an event whose
    worker died between the commit and the invalidation completes it) are invalidated; a
    cache failure then is logged and counted, never raised (the events are counted: a retry
    or a dead letter would be wrong; the stale entries expire with the cache TTL). Database
    errors raise before anything is committed.
    """
    if not events:
        return []
    now = timezone.now()
    outcomes: list[str] = []
    with transaction.atomic():
        new_ids = _record(events, now)
        fresh: list[ParsedEvent] = []
        for event in events:
            if event.event_id in new_ids:
                new_ids.discard(event.event_id)  # a second copy in the same batch: duplicate
                fresh.append(event)
                outcomes.append(metrics.OK)
            else:
                outcomes.append(metrics.DUPLICATE)
        ignored = _apply(fresh, now)
        if ignored:
            outcomes = [
                metrics.USER_GONE
                if outcome == metrics.OK and event.event_id in ignored
                else outcome
                for event, outcome in zip(events, outcomes, strict=True)
            ]
        done = list(zip(events, outcomes, strict=True))
        transaction.on_commit(lambda: _committed(done))
    return outcomes


def _field(model: type[models.Model], name: str) -> models.Field[Any, Any]:
    field = model._meta.get_field(name)
    assert isinstance(field, models.Field)  # a concrete column, never a relation
    return field


def _quote(name: str | None) -> str:
    return str(connection.ops.quote_name(str(name)))


def _record(events: Sequence[ParsedEvent], now: datetime) -> set[uuid.UUID]:
    """Insert the events' ids (ordered, so concurrent batches lock in the same order);
    return the ids that were new."""
    meta = ProcessedEvent._meta
    fields = [_field(ProcessedEvent, name) for name in ("event_id", "type", "user_id")]
    occurred = _field(ProcessedEvent, "occurred_at")
    processed = _field(ProcessedEvent, "processed_at")
    unique = {event.event_id: event for event in events}
    rows = []
    params: list[Any] = []
    for event_id in sorted(unique):
        event = unique[event_id]
        rows.append("(%s, %s, %s, %s, %s)")
        params += [
            fields[0].get_db_prep_value(event_id, connection),
            event.event_type,
            event.user_id,
            occurred.get_db_prep_value(event.occurred_at, connection),
            processed.get_db_prep_value(now, connection),
        ]
    quote = _quote
    columns = ", ".join(quote(f.column) for f in (*fields, occurred, processed))
    key = quote(fields[0].column)
    # Only quoted identifiers of the model and placeholders are formatted in; values are bound.
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES {', '.join(rows)} "  # noqa: S608
        f"ON CONFLICT ({key}) DO NOTHING RETURNING {key}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        inserted = cursor.fetchall()
    return {v if isinstance(v, uuid.UUID) else uuid.UUID(str(v)) for (v,) in inserted}


# Per user, in one statement and in key order (so concurrent batches cannot deadlock): an
# exclusive transaction lock for a user this batch deletes, a shared one for every other user
# it counts for. A deletion therefore waits for the batches counting its user, and they for
# it, and each sees the other's commit: nothing is counted for a user after its deletion.
_LOCK_USERS = (
    "SELECT count(CASE WHEN t.ex THEN pg_advisory_xact_lock(t.k)::text "
    "ELSE pg_advisory_xact_lock_shared(t.k)::text END) "
    "FROM (SELECT hashtextextended(u, 0) AS k, bool_or(e) AS ex "
    "FROM unnest(%s::text[], %s::bool[]) AS x(u, e) GROUP BY 1 ORDER BY 1) AS t"
)


def _apply(events: Sequence[ParsedEvent], now: datetime) -> set[uuid.UUID]:
    """The counter changes of ``events`` (in order where order matters: a user deletion);
    returns the ids of the events not counted because their user was deleted first."""
    if not events:
        return set()
    users = [event.user_id for event in events]
    deleting = [event.event_type == events_module.USER_DELETED for event in events]
    with connection.cursor() as cursor:
        cursor.execute(_LOCK_USERS, [users, deleting])
    gone = set(DeletedUser.objects.filter(user_id__in=set(users)).values_list("user_id", flat=True))
    ignored: set[uuid.UUID] = set()
    segment: list[ParsedEvent] = []
    for event in events:
        if event.event_type == events_module.USER_DELETED:
            _increments(segment, now)
            segment = []
            _user_deleted(user_id=event.user_id, now=now)
            gone.add(event.user_id)
        elif event.user_id in gone:
            ignored.add(event.event_id)
        else:
            segment.append(event)
    _increments(segment, now)
    return ignored


# Counter deltas of each event type that changes user_stats (playlist_updated: none, but
# it creates the row and moves last_event_at).
_STATS_DELTAS: dict[str, tuple[int, int, int, int]] = {
    # created, deleted, active, plays
    events_module.PLAYLIST_CREATED: (1, 0, 1, 0),
    events_module.PLAYLIST_DELETED: (0, 1, -1, 0),
    events_module.PLAYLIST_UPDATED: (0, 0, 0, 0),
    events_module.TRACK_PLAYED: (0, 0, 0, 1),
}


def _increments(events: Sequence[ParsedEvent], now: datetime) -> None:
    """Aggregate the deltas of ``events`` and add them with one upsert per table.

    ``INSERT .. ON CONFLICT DO UPDATE SET col = col + EXCLUDED.col`` is atomic per row even
    when another transaction inserts the same row concurrently (no lost update); rows are
    written in key order so concurrent batches lock them in the same order.
    """
    if not events:
        return
    stats: dict[str, list[Any]] = {}
    user_genres: dict[tuple[str, str], int] = defaultdict(int)
    genres: dict[str, int] = defaultdict(int)
    for event in events:
        deltas = _STATS_DELTAS[event.event_type]
        row = stats.get(event.user_id)
        if row is None:
            stats[event.user_id] = [*deltas, event.occurred_at]
        else:
            for index, delta in enumerate(deltas):
                row[index] += delta
            row[4] = max(row[4], event.occurred_at)
        if event.event_type == events_module.TRACK_PLAYED:
            genre = _track_genre(event.data)
            user_genres[(event.user_id, genre)] += 1
            genres[genre] += 1
    _upsert(
        UserStats,
        ("user_id",),
        [(user_id, *stats[user_id], now) for user_id in sorted(stats)],
        columns=(
            "playlists_created",
            "playlists_deleted",
            "playlists_active",
            "plays",
            "last_event_at",
            "updated_at",
        ),
        add=("playlists_created", "playlists_deleted", "playlists_active", "plays"),
    )
    if user_genres:
        inserted = _upsert(
            UserGenrePlays,
            ("user_id", "genre"),
            [(*key, user_genres[key]) for key in sorted(user_genres)],
            columns=("plays",),
            add=("plays",),
            returning_inserted=True,
        )
        # A (user, genre) row this upsert created is one more distinct user of the genre;
        # the same transaction adds it, so the count is exact and a duplicate event (never
        # applied) cannot add it twice.
        new_users: dict[str, int] = defaultdict(int)
        for _, genre in inserted:
            new_users[genre] += 1
        _upsert(
            GenrePlays,
            ("genre",),
            [(genre, genres[genre], new_users[genre]) for genre in sorted(genres)],
            columns=("plays", "users"),
            add=("plays", "users"),
        )


def _upsert(
    model: type[models.Model],
    key: tuple[str, ...],
    rows: list[tuple[Any, ...]],
    *,
    columns: tuple[str, ...],
    add: tuple[str, ...],
    returning_inserted: bool = False,
) -> list[tuple[Any, ...]]:
    """``INSERT .. ON CONFLICT (key) DO UPDATE`` of ``rows``; with ``returning_inserted``,
    the keys of the rows it inserted (not updated)."""
    meta = model._meta
    quote = _quote
    table = quote(meta.db_table)
    names = (*key, *columns)
    fields = [_field(model, name) for name in names]
    params: list[Any] = []
    for row in rows:
        params += [
            field.get_db_prep_value(value, connection)
            for field, value in zip(fields, row, strict=True)
        ]
    placeholder = "(" + ", ".join(["%s"] * len(names)) + ")"
    sets = []
    for name in columns:
        column = quote(_field(model, name).column)
        if name in add:
            sets.append(f"{column} = {table}.{column} + EXCLUDED.{column}")
        elif name == "last_event_at":  # events may arrive out of order: keep the latest
            sets.append(
                f"{column} = GREATEST(COALESCE({table}.{column}, EXCLUDED.{column}), "
                f"EXCLUDED.{column})"
            )
        else:
            sets.append(f"{column} = EXCLUDED.{column}")
    # Only quoted identifiers of the model and placeholders are formatted in; values are bound.
    sql = (
        f"INSERT INTO {table} ({', '.join(quote(f.column) for f in fields)}) "  # noqa: S608
        f"VALUES {', '.join([placeholder] * len(rows))} "
        f"ON CONFLICT ({', '.join(quote(_field(model, name).column) for name in key)}) "
        f"DO UPDATE SET {', '.join(sets)}"
    )
    if returning_inserted:
        # PostgreSQL: a row this statement inserted has no deleting/locking transaction yet
        # (xmax = 0); one it updated carries this transaction's id in xmax.
        key_columns = ", ".join(quote(_field(model, name).column) for name in key)
        sql += f" RETURNING {key_columns}, (xmax = 0)"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if not returning_inserted:
            return []
        return [tuple(row[:-1]) for row in cursor.fetchall() if row[-1]]


def _committed(done: list[tuple[ParsedEvent, str]]) -> None:
    """After the commit: invalidate the batch's cache keys (one call), then count and log.

    Nothing here raises into the worker: the counters are committed, so a retry or a dead
    letter would only report as failed an event that was counted. A failed invalidation is
    logged and counted by :func:`cache_invalidate` (the stale entries expire with their TTL).
    """
    keys: dict[str, None] = {}
    for event, _ in done:
        keys.update(dict.fromkeys(event.cache_keys()))
    cache_invalidate(keys=keys)
    _count_and_log(done)


def _count_and_log(done: list[tuple[ParsedEvent, str]]) -> None:
    tally: dict[tuple[str, str], int] = defaultdict(int)
    now = timezone.now()
    for event, outcome in done:
        tally[(event.event_type, outcome)] += 1
        extra = {
            "event_id": str(event.event_id),
            "user_id": event.user_id,
            "event_type": event.event_type,
        }
        with log_context.bound(
            request_id=event.request_id or log_context.request_id_var.get(),
            user_id=event.user_id,
            event_id=str(event.event_id),
        ):
            if outcome == metrics.OK:
                lag = (now - event.occurred_at).total_seconds()
                metrics.event_lag.observe(max(lag, 0.0))
                if _log_info():
                    logger.info("counts updated", extra={**extra, "lag_seconds": round(lag, 3)})
            elif outcome == metrics.USER_GONE:
                logger.info("event of a deleted user ignored", extra=extra)
            elif _log_info():
                logger.info("duplicate event ignored", extra=extra)
    for (event_type, outcome), count in tally.items():
        metrics.count_event(event_type, outcome, count)


def _log_info() -> bool:
    return logger.isEnabledFor(logging.INFO)


def processed_events_prune(*, older_than: timedelta) -> int:
    """Forget processed event ids older than ``older_than``; returns how many were removed.

    Idempotency holds for redeliveries within that window (RabbitMQ redelivers within
    minutes; a dead-lettered message replayed later than the window would count again).
    """
    cutoff = timezone.now() - older_than
    deleted, _ = ProcessedEvent.objects.filter(processed_at__lt=cutoff).delete()
    return deleted
