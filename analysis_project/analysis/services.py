"""Writes of the analysis service: count one event, exactly once."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, models, transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce, Greatest
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
    GenrePlays,
    ProcessedEvent,
    UserGenrePlays,
    UserStats,
)
from common import events
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


def _add(
    model: type[models.Model],
    *,
    lookup: dict[str, Any],
    deltas: dict[str, int],
    on_update: dict[str, Any] | None = None,
    on_create: dict[str, Any] | None = None,
) -> None:
    """Add ``deltas`` to the row ``lookup`` names, creating it when missing; never loses updates.

    The UPDATE is one atomic statement (``col = col + n``) that locks the row. When the row does
    not exist yet two transactions may both try to insert it: the loser's INSERT waits for the
    winner's commit and fails on the unique constraint (inside a savepoint), after which its
    UPDATE sees the committed row. SQLite (BEGIN IMMEDIATE) serialises writers anyway.
    """
    updates: dict[str, Any] = {name: F(name) + delta for name, delta in deltas.items()}
    updates.update(on_update or {})
    manager = model._default_manager
    if manager.filter(**lookup).update(**updates):
        return
    try:
        with transaction.atomic():
            manager.create(**lookup, **deltas, **(on_create or {}))
        return
    except IntegrityError:
        pass
    manager.filter(**lookup).update(**updates)


def _add_user_stats(*, user_id: str, occurred_at: datetime, now: datetime, **deltas: int) -> None:
    at = Value(occurred_at, output_field=models.DateTimeField())
    _add(
        UserStats,
        lookup={"user_id": user_id},
        deltas=deltas,
        # Events may arrive out of order: keep the latest occurred_at seen.
        on_update={
            "last_event_at": Greatest(Coalesce(F("last_event_at"), at), at),
            "updated_at": now,
        },
        on_create={"last_event_at": occurred_at, "updated_at": now},
    )


Handler = Callable[..., None]


def _playlist_created(
    *, user_id: str, occurred_at: datetime, now: datetime, data: dict[str, Any]
) -> None:
    _add_user_stats(
        user_id=user_id, occurred_at=occurred_at, now=now, playlists_created=1, playlists_active=1
    )


def _playlist_deleted(
    *, user_id: str, occurred_at: datetime, now: datetime, data: dict[str, Any]
) -> None:
    _add_user_stats(
        user_id=user_id, occurred_at=occurred_at, now=now, playlists_deleted=1, playlists_active=-1
    )


def _playlist_updated(
    *, user_id: str, occurred_at: datetime, now: datetime, data: dict[str, Any]
) -> None:
    _add_user_stats(user_id=user_id, occurred_at=occurred_at, now=now)


def _track_played(
    *, user_id: str, occurred_at: datetime, now: datetime, data: dict[str, Any]
) -> None:
    genre = _track_genre(data)
    _add_user_stats(user_id=user_id, occurred_at=occurred_at, now=now, plays=1)
    _add(UserGenrePlays, lookup={"user_id": user_id, "genre": genre}, deltas={"plays": 1})
    _add(GenrePlays, lookup={"genre": genre}, deltas={"plays": 1})


def _user_deleted(
    *, user_id: str, occurred_at: datetime, now: datetime, data: dict[str, Any]
) -> None:
    # Overall genre totals keep the plays: they are history, not personal data.
    UserStats.objects.filter(user_id=user_id).delete()
    UserGenrePlays.objects.filter(user_id=user_id).delete()


HANDLERS: dict[str, Handler] = {
    events.PLAYLIST_CREATED: _playlist_created,
    events.PLAYLIST_UPDATED: _playlist_updated,
    events.PLAYLIST_DELETED: _playlist_deleted,
    events.TRACK_PLAYED: _track_played,
    events.USER_DELETED: _user_deleted,
}

# Keys an event type touches, also invalidated on a duplicate: a redelivery after a failed
# invalidation completes it.
_KEYS: dict[str, Callable[[str], list[str]]] = {
    events.PLAYLIST_CREATED: lambda user_id: [summary_key(user_id)],
    events.PLAYLIST_UPDATED: lambda user_id: [summary_key(user_id)],
    events.PLAYLIST_DELETED: lambda user_id: [summary_key(user_id)],
    events.TRACK_PLAYED: lambda user_id: [
        summary_key(user_id),
        user_genres_key(user_id),
        GLOBAL_GENRES_KEY,
    ],
    events.USER_DELETED: lambda user_id: [summary_key(user_id), user_genres_key(user_id)],
}


def event_process(*, envelope: Any) -> str:
    """Count one event envelope exactly once; return ``"ok"`` or ``"duplicate"``.

    The record of the event and its counter changes commit in one transaction; a second
    delivery of the same ``event_id`` changes nothing. The cache keys the event touches are
    deleted right after the commit (a cache failure raises, so the caller retries, and the
    retry, a duplicate, invalidates again). Raises InvalidEnvelope for a malformed envelope
    or an unknown type, and database/cache errors for the caller to retry.
    """
    envelope = validate_envelope(envelope)
    event_type: str = envelope["type"]
    user_id: str = envelope["user_id"]
    event_id = str(envelope["event_id"])
    if len(user_id) > USER_ID_MAX_LENGTH:
        raise InvalidEnvelope(ERROR_USER_ID_TOO_LONG)
    occurred_at = parse_occurred_at(str(envelope["occurred_at"]))
    data: dict[str, Any] = envelope["data"]
    keys = _KEYS[event_type](user_id)
    now = timezone.now()
    outcome = metrics.OK
    with transaction.atomic():
        try:
            with transaction.atomic():
                ProcessedEvent.objects.create(
                    event_id=event_id,
                    type=event_type,
                    user_id=user_id,
                    occurred_at=occurred_at,
                    processed_at=now,
                )
        except IntegrityError:
            outcome = metrics.DUPLICATE
        else:
            HANDLERS[event_type](user_id=user_id, occurred_at=occurred_at, now=now, data=data)
        transaction.on_commit(
            lambda: _committed(
                event_type=event_type,
                event_id=event_id,
                user_id=user_id,
                occurred_at=occurred_at,
                outcome=outcome,
            )
        )
        transaction.on_commit(lambda: cache_invalidate(keys=keys))
    return outcome


def _committed(
    *, event_type: str, event_id: str, user_id: str, occurred_at: datetime, outcome: str
) -> None:
    metrics.count_event(event_type, outcome)
    extra = {"event_id": event_id, "user_id": user_id, "event_type": event_type}
    if outcome == metrics.OK:
        lag = (timezone.now() - occurred_at).total_seconds()
        metrics.event_lag.observe(max(lag, 0.0))
        logger.info("counts updated", extra={**extra, "lag_seconds": round(lag, 3)})
    else:
        logger.info("duplicate event ignored", extra=extra)


def processed_events_prune(*, older_than: timedelta) -> int:
    """Forget processed event ids older than ``older_than``; returns how many were removed.

    Idempotency holds for redeliveries within that window (RabbitMQ redelivers within
    minutes; a dead-lettered message replayed later than the window would count again).
    """
    cutoff = timezone.now() - older_than
    deleted, _ = ProcessedEvent.objects.filter(processed_at__lt=cutoff).delete()
    return deleted
