"""Reads of playlists (tombstones of deleted playlists are never visible)."""

from __future__ import annotations

from typing import Any

from bson import ObjectId
from mongoengine.queryset.queryset import QuerySet

from playlists import db
from playlists.documents import Playlist
from playlists.exceptions import PlaylistNotFound


def parse_playlist_id(value: object) -> ObjectId:
    """An ObjectId from a path segment; anything else is a 404, never a query operator."""
    if not isinstance(value, str) or len(value) != 24 or not ObjectId.is_valid(value):
        raise PlaylistNotFound()
    return ObjectId(value)


def playlist_list(*, owner_id: str) -> QuerySet:
    """The owner's playlists, newest first (lazy; slice it to page through)."""
    db.connect()
    return (
        Playlist.objects(owner_id=owner_id, deleted=False)
        .exclude("pending_events")
        .order_by("-created_at", "-id")
    )


def playlist_get(*, owner_id: str, playlist_id: str) -> Playlist:
    """One of the owner's playlists; PlaylistNotFound for unknown, malformed or foreign ids."""
    object_id = parse_playlist_id(playlist_id)
    db.connect()
    playlist = (
        Playlist.objects(id=object_id, owner_id=owner_id, deleted=False)
        .exclude("pending_events")
        .first()
    )
    if playlist is None:
        raise PlaylistNotFound()
    return playlist


def playlist_tracks_get(*, owner_id: str, playlist_id: str) -> list[dict[str, Any]]:
    """The stored tracks of one of the owner's playlists, as plain dicts (what a play needs:
    one find_one reading only ``tracks``); PlaylistNotFound as :func:`playlist_get`."""
    object_id = parse_playlist_id(playlist_id)
    db.connect()
    found = Playlist._get_collection().find_one(
        {"_id": object_id, "owner_id": owner_id, "deleted": False}, {"tracks": 1}
    )
    if found is None:
        raise PlaylistNotFound()
    return list(found.get("tracks") or [])
