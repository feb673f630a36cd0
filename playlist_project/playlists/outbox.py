"""The playlist service's transactional outbox: events live inside the playlist documents.

Why this is atomic without multi-document transactions
------------------------------------------------------
MongoDB applies every write to a *single document* atomically: an ``insert_one`` or an
``update_one`` (all of its ``$set``, ``$inc``, ``$push`` and ``$pull`` operators together) is
seen by every reader and survives a crash either entirely or not at all. So each change and
the event that describes it are written by ONE single-document operation:

* create: ``insert_one`` of the new playlist with ``pending_events: [<PlaylistCreated>]``;
* update: ``update_one({_id, owner_id, deleted: false, version: v},
  {$set: {...new fields...}, $inc: {version: 1}, $push: {pending_events: <PlaylistUpdated>}})``;
* play: ``update_one({_id, owner_id, deleted: false, version: v},
  {$push: {pending_events: <TrackPlayed>}})``;
* delete: ``update_one({_id, owner_id, deleted: false, version: v},
  {$set: {deleted: true, ...}, $push: {pending_events: <PlaylistDeleted>}})``: the document
  becomes a *tombstone* that the API no longer shows and that keeps the event until it is out.

Either the change and its event are both stored, or neither is (the request then fails and
no event is ever sent). The ``version`` filter makes read-modify-write updates exact: the
event describes precisely the state it was computed from, or the update matches nothing and
is retried.

A relay (:class:`common.outbox.Relay`) publishes pending events with publisher confirms, and
only then ``$pull``s the event by ``event_id``; a tombstone whose last event is out is then
deleted (``delete_one`` guarded by ``deleted: true`` and an empty ``pending_events``). A crash
between the publish and the ``$pull`` publishes the event again later: consumers dedupe by
``event_id``. Pending events are found through a multikey index on
``pending_events.written_at``.

The relay (``manage.py outbox_relay``, :mod:`playlists.relay`) is the only publisher; the web
processes only write.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.collection import Collection

from playlists import db
from playlists.documents import Playlist

EPOCH = datetime(1970, 1, 1)


def utcnow() -> datetime:
    """Naive UTC with millisecond precision: exactly what BSON stores and gives back."""
    now = datetime.now(UTC).replace(tzinfo=None)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def collection() -> Collection[dict[str, Any]]:
    db.connect()
    return Playlist._get_collection()


def entry(envelope: dict[str, Any], *, written_at: datetime | None = None) -> dict[str, Any]:
    """The outbox entry stored in ``pending_events`` for one envelope."""
    return {
        "event_id": envelope["event_id"],
        "written_at": written_at or utcnow(),
        "envelope": envelope,
    }


class PlaylistOutboxStore:
    """:class:`common.outbox.OutboxStore` over the ``pending_events`` arrays of playlists."""

    def __init__(self) -> None:
        # event_id -> the playlist holding it, from the last pending(): marks go by _id.
        self._playlist_of: dict[str, Any] = {}

    def pending(self, *, limit: int, older_than_seconds: float) -> list[dict[str, Any]]:
        cutoff = utcnow() - timedelta(seconds=max(0.0, older_than_seconds))
        cursor = (
            collection()
            # Both bounds: MongoDB type-brackets a lone $lte to dates anyway; SecantusDB scans
            # every playlist without the lower one (docs/mongodb-compat.md).
            .find(
                {"pending_events.written_at": {"$gte": EPOCH, "$lte": cutoff}},
                {"pending_events": 1},
            )
            .sort("pending_events.written_at", 1)
            .limit(max(1, limit))
        )
        found: list[tuple[datetime, int, dict[str, Any]]] = []
        self._playlist_of = {}
        for document in cursor:
            for position, item in enumerate(document.get("pending_events") or []):
                if item["written_at"] <= cutoff:
                    found.append((item["written_at"], position, item["envelope"]))
                    self._playlist_of[item["event_id"]] = document["_id"]
        # Oldest first; inside one playlist the array order (= the order of its changes).
        found.sort(key=lambda row: (row[0], row[1]))
        return [envelope for _, _, envelope in found[: max(1, limit)]]

    def mark_published(self, *, event_id: str) -> None:
        """``$pull`` the event from its playlist (found by ``_id``, known from ``pending()``),
        then delete the playlist if it is a tombstone with nothing left to send."""
        playlist_id = self._playlist_of.pop(event_id, None)
        if playlist_id is None:
            found = collection().find_one({"pending_events.event_id": event_id}, {"_id": 1})
            if found is None:
                return
            playlist_id = found["_id"]
        collection().update_one(
            {"_id": playlist_id}, {"$pull": {"pending_events": {"event_id": event_id}}}
        )
        # The filter re-checks: an event pushed meanwhile keeps the tombstone alive.
        collection().delete_one(
            {"_id": playlist_id, "deleted": True, "pending_events": {"$size": 0}}
        )

    def stats(self) -> tuple[int, float | None]:
        """(pending events, unix time of the oldest one or None)."""
        rows = list(
            collection().aggregate(
                [
                    # A range on the indexed field: only documents with pending events.
                    {"$match": {"pending_events.written_at": {"$gte": EPOCH}}},
                    # One row per event, not {"$min": "$pending_events.written_at"} per
                    # document: SecantusDB evaluates that path through an array as missing
                    # (docs/mongodb-compat.md); MongoDB runs both forms alike.
                    {"$unwind": "$pending_events"},
                    {
                        "$group": {
                            "_id": None,
                            "n": {"$sum": 1},
                            "oldest": {"$min": "$pending_events.written_at"},
                        }
                    },
                ]
            )
        )
        if not rows or not rows[0]["n"]:
            return 0, None
        oldest: datetime = rows[0]["oldest"]
        return int(rows[0]["n"]), oldest.replace(tzinfo=UTC).timestamp()
