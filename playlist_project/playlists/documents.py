"""mongoengine documents of the playlist service (they never leave this service)."""

from __future__ import annotations

import logging

from mongoengine import (
    BooleanField,
    DateTimeField,
    DictField,
    Document,
    EmbeddedDocument,
    EmbeddedDocumentField,
    IntField,
    ListField,
    StringField,
)
from pymongo.errors import PyMongoError

logger = logging.getLogger(__name__)

NAME_MAX = 200
DESCRIPTION_MAX = 2000
TITLE_MAX = 200
TEXT_MAX = 200


class Track(EmbeddedDocument):
    """One track of a playlist; ``genre`` is stored normalised (stripped, lower case)."""

    title = StringField(required=True, min_length=1, max_length=TITLE_MAX)
    artist = StringField(max_length=TEXT_MAX)
    album = StringField(max_length=TEXT_MAX)
    genre = StringField(max_length=TEXT_MAX)
    duration_ms = IntField(min_value=0)


class Playlist(Document):
    """A user's playlist plus the outbox of its own changes (``pending_events``).

    ``deleted`` marks a tombstone: the playlist is gone for the API but its PlaylistDeleted
    event is still pending; the outbox removes the document once that event is confirmed.
    ``version`` grows on every change and guards read-modify-write updates.
    ``pending_events`` holds the events of this playlist's create, updates and delete (at most
    ``PLAYLIST_OUTBOX_MAX_PER_PLAYLIST``); plays go to :class:`OutboxEvent`.
    """

    owner_id = StringField(required=True)
    name = StringField(required=True, min_length=1, max_length=NAME_MAX)
    description = StringField(max_length=DESCRIPTION_MAX, default="")
    tracks = ListField(EmbeddedDocumentField(Track), default=list)
    created_at = DateTimeField(required=True)
    updated_at = DateTimeField(required=True)
    deleted = BooleanField(default=False)
    version = IntField(default=0)
    # Each entry: {"event_id": str, "written_at": datetime, "envelope": {...}}.
    pending_events = ListField(DictField(), default=list)

    meta = {
        "collection": "playlists",
        "auto_create_index": False,
        "indexes": [
            {"fields": ["owner_id", "deleted", "-created_at"], "name": "owner_recent"},
            {"fields": ["pending_events.written_at"], "name": "outbox_pending"},
            {"fields": ["pending_events.event_id"], "name": "outbox_event_id"},
        ],
    }


class OutboxEvent(Document):
    """An event that changes no playlist (TrackPlayed), waiting for the relay on its own.

    The ``outbox`` collection: one small document per event, written by one ``insert_one``;
    its ``_id`` is the event's ``event_id``. See :mod:`playlists.outbox` for why plays live
    here and the other events inside their playlist.
    """

    id = StringField(primary_key=True)
    owner_id = StringField(required=True)
    written_at = DateTimeField(required=True)
    envelope = DictField(required=True)

    meta = {
        "collection": "outbox",
        "auto_create_index": False,
        "indexes": [
            {"fields": ["written_at"], "name": "outbox_written_at"},
            {"fields": ["owner_id"], "name": "outbox_owner"},
        ],
    }


class DeletedUser(Document):
    """A user whose UserDeleted event was handled: their writes are refused from then on.

    The ``deleted_users`` collection, ``_id`` the user id; kept for good (a few bytes per
    deleted account), so a request still in flight from a deleted account writes nothing.
    """

    id = StringField(primary_key=True)
    deleted_at = DateTimeField(required=True)

    meta = {"collection": "deleted_users", "auto_create_index": False}


def ensure_indexes() -> None:
    """Create the indexes; a database that is down now must not stop the process starting."""
    try:
        Playlist.ensure_indexes()
        OutboxEvent.ensure_indexes()
    except PyMongoError as exc:
        logger.warning("could not create MongoDB indexes now: %s", exc)
