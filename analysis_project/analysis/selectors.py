"""Reads of the analysis service, cache-aside."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, TypedDict

from django.conf import settings

from analysis.cache import GLOBAL_GENRES_KEY, cache_read_through, summary_key, user_genres_key
from analysis.models import GenrePlays, UserGenrePlays, UserStats

TOP_GENRES_IN_SUMMARY = 5
# Genre lists are cached whole up to this length; a request's `limit` slices the cached list.
MAX_GENRES = 100

Scope = Literal["me", "global"]


class GenreCount(TypedDict):
    genre: str
    plays: int


class UserSummary(TypedDict):
    user_id: str
    playlists_created: int
    playlists_active: int
    plays: int
    top_genres: list[GenreCount]
    updated_at: datetime | None


def _user_genres_load(user_id: str) -> list[GenreCount]:
    rows = (
        UserGenrePlays.objects.filter(user_id=user_id, plays__gt=0)
        .order_by("-plays", "genre")
        .values("genre", "plays")[:MAX_GENRES]
    )
    return [GenreCount(genre=row["genre"], plays=row["plays"]) for row in rows]


def genre_min_users() -> int:
    """Distinct users a genre needs before the global leaderboard shows it (at least 1)."""
    return max(1, int(settings.ANALYSIS_GENRE_MIN_USERS))


def _global_genres_load() -> list[GenreCount]:
    # Genres are free text: one user's (a name, an insult, an advert) must never reach
    # everyone's leaderboard. Shown once enough distinct users played it.
    rows = (
        GenrePlays.objects.filter(plays__gt=0, users__gte=genre_min_users())
        .order_by("-plays", "genre")
        .values("genre", "plays")[:MAX_GENRES]
    )
    return [GenreCount(genre=row["genre"], plays=row["plays"]) for row in rows]


def _summary_load(user_id: str) -> UserSummary:
    stats = UserStats.objects.filter(user_id=user_id).first()
    top = _user_genres_load(user_id)[:TOP_GENRES_IN_SUMMARY]
    if stats is None:
        return UserSummary(
            user_id=user_id,
            playlists_created=0,
            playlists_active=0,
            plays=0,
            top_genres=top,
            updated_at=None,
        )
    return UserSummary(
        user_id=user_id,
        playlists_created=stats.playlists_created,
        # Stored as the exact signed sum; a delete seen before its create shows 0, not -1.
        playlists_active=max(stats.playlists_active, 0),
        plays=stats.plays,
        top_genres=top,
        updated_at=stats.updated_at,
    )


def user_summary_get(*, user_id: str) -> UserSummary:
    """The caller's counters and top genres; zeros for a user with no events."""
    return cache_read_through(key=summary_key(user_id), load=lambda: _summary_load(user_id))


def genre_plays_list(*, scope: Scope, user_id: str, limit: int) -> list[GenreCount]:
    """Genres by plays, most played first: the caller's (``me``) or everyone's (``global``,
    only genres at least ``ANALYSIS_GENRE_MIN_USERS`` distinct users played)."""
    loaded: list[Any]
    if scope == "me":
        loaded = cache_read_through(
            key=user_genres_key(user_id), load=lambda: _user_genres_load(user_id)
        )
    else:
        loaded = cache_read_through(key=GLOBAL_GENRES_KEY, load=_global_genres_load)
    return loaded[: max(0, min(limit, MAX_GENRES))]
