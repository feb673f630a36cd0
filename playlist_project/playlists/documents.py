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
    """A user's playlist plus its transactional outbox (``pending_events``).

    ``deleted`` marks a tombstone: the playlist is gone for the API but its PlaylistDeleted
    event is still pending; the outbox removes the document once that event is confirmed.
    ``version`` grows on every change and guards read-modify-write updates.
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


def ensure_indexes() -> None:
    """Create the indexes; a database that is down now must not stop the process starting."""
    try:
        Playlist.ensure_indexes()
    except PyMongoError as exc:
        logger.warning("could not create MongoDB indexes now: %s", exc)
