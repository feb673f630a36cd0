"""Writes of playlists; each change and its event are stored by one single-document write.

See :mod:`playlists.outbox` for why that is atomic and where each event waits (a play's in the
``outbox`` collection, the others' in their playlist). The request path never talks to the
broker: the relay process publishes the event. After the write the user's cache is invalidated.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from bson import ObjectId
from django.conf import settings
from rest_framework.exceptions import ValidationError

from common import events
from playlists import accounts, cache, metrics, outbox
from playlists.documents import Playlist, Track
from playlists.exceptions import (
    TRACK_OUT_OF_RANGE,
    AccountDeleted,
    OutboxFull,
    PlaylistConflict,
    PlaylistLimitReached,
)
from playlists.outbox import collection, entry, utcnow
from playlists.selectors import playlist_get, playlist_tracks_get

logger = logging.getLogger(__name__)

# Read-modify-write updates retry this often when another writer changed the playlist.
MAX_WRITE_ATTEMPTS = 5
UPDATABLE_FIELDS = ("name", "description", "tracks")


def _tracks_to_mongo(tracks: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    documents = [Track(**track) for track in tracks]
    for document in documents:
        document.validate()
    return [document.to_mongo().to_dict() for document in documents]


def _committed(
    *,
    operation: str,
    owner_id: str,
    playlist_id: str,
    envelope: dict[str, Any],
    invalidate: bool = True,
) -> None:
    metrics.PLAYLIST_WRITES.labels(operation=operation).inc()
    if invalidate:
        cache.invalidate_user(owner_id)
    message = "track played" if operation == "played" else f"playlist {operation}"
    logger.info(
        message,
        extra={
            "playlist_id": playlist_id,
            "event_id": envelope["event_id"],
            "event_type": envelope["type"],
        },
    )


def _genres(tracks: Sequence[Any]) -> list[str]:
    return sorted({track.genre for track in tracks if getattr(track, "genre", None)})


def playlist_create(
    *,
    owner_id: str,
    name: str,
    description: str = "",
    tracks: Sequence[dict[str, Any]] = (),
    request_id: str | None = None,
) -> Playlist:
    """Insert a playlist with its PlaylistCreated event already in its outbox.

    PlaylistLimitReached (nothing written) when the owner already has PLAYLIST_MAX_PER_USER
    live playlists. The count and the insert are two operations: concurrent creates of one
    user can pass the check together, so the limit can be exceeded by at most the number of
    that user's creates in flight at once (bounded by the gateway's per-user rate limit).
    """
    max_playlists = settings.PLAYLIST_MAX_PER_USER
    live = {"owner_id": owner_id, "deleted": False}
    if collection().count_documents(live, limit=max_playlists) >= max_playlists:
        raise PlaylistLimitReached(max_playlists=max_playlists)
    now = utcnow()
    playlist = Playlist(
        id=ObjectId(),
        owner_id=owner_id,
        name=name,
        description=description,
        tracks=[Track(**track) for track in tracks],
        created_at=now,
        updated_at=now,
        deleted=False,
        version=0,
    )
    envelope = events.make_envelope(
        events.PLAYLIST_CREATED,
        user_id=owner_id,
        request_id=request_id,
        data={"playlist_id": str(playlist.id), "name": name, "track_count": len(tracks)},
    )
    playlist.pending_events = [entry(envelope, written_at=now)]
    playlist.validate()
    collection().insert_one(playlist.to_mongo().to_dict())
    if accounts.account_is_deleted(user_id=owner_id):  # the deletion raced with this create
        collection().delete_one({"_id": playlist.id})
        raise AccountDeleted()
    _committed(
        operation="created", owner_id=owner_id, playlist_id=str(playlist.id), envelope=envelope
    )
    playlist.pending_events = []
    return playlist


def _write_if_unchanged(playlist: Playlist, *, owner_id: str, update: dict[str, Any]) -> bool:
    """Apply ``update`` (change and event together) only if nobody wrote the playlist since it
    was read and its outbox has room: one atomic single-document update_one. False: read again
    and retry. OutboxFull (nothing written) when the playlist's outbox is at its cap."""
    result = collection().update_one(
        {
            "_id": playlist.id,
            "owner_id": owner_id,
            "deleted": False,
            "version": playlist.version,
            **outbox.below_cap(),
        },
        update,
    )
    if result.matched_count == 1:
        return True
    if outbox.outbox_full(owner_id=owner_id, playlist_id=playlist.id):
        logger.warning(
            "playlist outbox full, change refused", extra={"playlist_id": str(playlist.id)}
        )
        raise OutboxFull()
    return False


def playlist_update(
    *, owner_id: str, playlist_id: str, changes: dict[str, Any], request_id: str | None = None
) -> Playlist:
    """Apply ``changes`` (any of name, description, tracks) and record PlaylistUpdated."""
    unknown = set(changes) - set(UPDATABLE_FIELDS)
    if unknown:
        raise ValueError(f"not updatable: {', '.join(sorted(unknown))}")
    for _ in range(MAX_WRITE_ATTEMPTS):
        playlist = playlist_get(owner_id=owner_id, playlist_id=playlist_id)
        now = utcnow()
        new_values: dict[str, Any] = {"updated_at": now}
        if "name" in changes:
            new_values["name"] = changes["name"]
        if "description" in changes:
            new_values["description"] = changes["description"]
        if "tracks" in changes:
            new_values["tracks"] = _tracks_to_mongo(changes["tracks"])
        name = new_values.get("name", playlist.name)
        track_count = len(changes["tracks"]) if "tracks" in changes else len(playlist.tracks)
        envelope = events.make_envelope(
            events.PLAYLIST_UPDATED,
            user_id=owner_id,
            request_id=request_id,
            data={"playlist_id": playlist_id, "name": name, "track_count": track_count},
        )
        written = _write_if_unchanged(
            playlist,
            owner_id=owner_id,
            update={
                "$set": new_values,
                "$inc": {"version": 1},
                "$push": {"pending_events": entry(envelope, written_at=now)},
            },
        )
        if written:
            _committed(
                operation="updated", owner_id=owner_id, playlist_id=playlist_id, envelope=envelope
            )
            playlist.name = name
            playlist.updated_at = now
            playlist.version += 1
            if "description" in changes:
                playlist.description = changes["description"]
            if "tracks" in changes:
                playlist.tracks = [Track(**track) for track in changes["tracks"]]
            return playlist
    raise PlaylistConflict()


def playlist_delete(*, owner_id: str, playlist_id: str, request_id: str | None = None) -> None:
    """Turn the playlist into a tombstone carrying its PlaylistDeleted event."""
    for _ in range(MAX_WRITE_ATTEMPTS):
        playlist = playlist_get(owner_id=owner_id, playlist_id=playlist_id)
        now = utcnow()
        envelope = events.make_envelope(
            events.PLAYLIST_DELETED,
            user_id=owner_id,
            request_id=request_id,
            data={
                "playlist_id": playlist_id,
                "track_count": len(playlist.tracks),
                "genres": _genres(playlist.tracks),
            },
        )
        written = _write_if_unchanged(
            playlist,
            owner_id=owner_id,
            update={
                "$set": {"deleted": True, "updated_at": now, "tracks": [], "description": ""},
                "$inc": {"version": 1},
                "$push": {"pending_events": entry(envelope, written_at=now)},
            },
        )
        if written:
            _committed(
                operation="deleted", owner_id=owner_id, playlist_id=playlist_id, envelope=envelope
            )
            return
    raise PlaylistConflict()


def playlist_play(
    *, owner_id: str, playlist_id: str, track_index: int, request_id: str | None = None
) -> dict[str, Any]:
    """Record a play of one track (TrackPlayed); returns the event's envelope.

    A play changes nothing in the playlist: its event alone is written, by one ``insert_one``
    into the ``outbox`` collection, never growing the playlist document. It describes the
    playlist as read here (a concurrent update or delete comes after it).
    """
    tracks = playlist_tracks_get(owner_id=owner_id, playlist_id=playlist_id)
    if not 0 <= track_index < len(tracks):
        raise ValidationError({"track": [TRACK_OUT_OF_RANGE]})
    track = Track._from_son(tracks[track_index])
    envelope = events.make_envelope(
        events.TRACK_PLAYED,
        user_id=owner_id,
        request_id=request_id,
        data={
            "playlist_id": playlist_id,
            "track_index": track_index,
            "title": track.title,
            "artist": track.artist,
            "genre": track.genre,
        },
    )
    outbox.record(envelope, owner_id=owner_id)
    # A play changes nothing a GET shows: the user's cache stays valid.
    _committed(
        operation="played",
        owner_id=owner_id,
        playlist_id=playlist_id,
        envelope=envelope,
        invalidate=False,
    )
    return envelope


def playlists_delete_for_user(*, user_id: str) -> int:
    """Delete every playlist of a deleted user, tombstones and unsent events (plays too) included.

    No PlaylistDeleted events: the analysis service handles UserDeleted itself and erases the
    user's data; the user's still-pending events are dropped with the documents on purpose,
    since sending them after the erasure would only recreate data about a deleted user.
    Idempotent: a redelivered UserDeleted deletes nothing more.
    """
    accounts.account_deleted_mark(user_id=user_id)  # first: see playlists.accounts
    live = collection().delete_many({"owner_id": user_id, "deleted": False}).deleted_count
    collection().delete_many({"owner_id": user_id})
    outbox.events_collection().delete_many({"owner_id": user_id})
    if live:
        metrics.PLAYLIST_WRITES.labels(operation="deleted").inc(live)
    cache.invalidate_user(user_id)
    logger.info("playlists of deleted user removed", extra={"deleted_count": live})
    return live


def event_handle(*, envelope: dict[str, Any]) -> None:
    """Act on one consumed event (only UserDeleted concerns this service)."""
    if envelope["type"] == events.USER_DELETED:
        # The deleted user: data.user_id when the publisher names it, else the envelope's.
        target = envelope["data"].get("user_id") or envelope["user_id"]
        if not isinstance(target, str | int) or isinstance(target, bool) or not str(target):
            raise events.InvalidEnvelope("UserDeleted needs a user id")
        playlists_delete_for_user(user_id=str(target))
    else:
        logger.info("event ignored", extra={"event_type": envelope["type"]})
