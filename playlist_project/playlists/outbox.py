"""The playlist service's transactional outbox: bounded while the broker is down.

Two places, chosen by what the write changes
--------------------------------------------
MongoDB applies every write to a *single document* atomically: an ``insert_one`` or an
``update_one`` (all of its ``$set``, ``$inc``, ``$push`` and ``$pull`` operators together) is
seen by every reader and survives a crash either entirely or not at all. A standalone MongoDB
(what Compose runs) has no multi-document transactions, so a change and the event describing
it must be ONE single-document write:

* create: ``insert_one`` of the new playlist with ``pending_events: [<PlaylistCreated>]``;
* update: ``update_one({_id, owner_id, deleted: false, version: v, <below the cap>},
  {$set: {...new fields...}, $inc: {version: 1}, $push: {pending_events: <PlaylistUpdated>}})``;
* delete: ``update_one({_id, owner_id, deleted: false, version: v, <below the cap>},
  {$set: {deleted: true, ...}, $push: {pending_events: <PlaylistDeleted>}})``: the document
  becomes a *tombstone* that the API no longer shows and that keeps the event until it is out;
* play: a play changes nothing in the playlist, so its event (TrackPlayed) is the whole write:
  ``insert_one`` of ``{_id: event_id, owner_id, written_at, envelope}`` into the separate
  ``outbox`` collection (:class:`playlists.documents.OutboxEvent`), atomic on its own.

Either the change and its event are both stored, or neither is (the request then fails and
no event is ever sent). The ``version`` filter makes read-modify-write updates exact: the
event describes precisely the state it was computed from, or the update matches nothing and
is retried. A play reads the live playlist (404 otherwise) and records what it read; a play
racing with an update or a delete of its playlist is ordered before it, as if it had
happened at the read.

Why not everything in the playlist document: plays are by far the most frequent write. While
the broker was down, each one ``$push``-ed onto its playlist until the document neared
MongoDB's 16 MB limit, and from then on every write to that playlist failed (a 30-minute
outage at 10 plays/s is 18,000 events: 7.6 MB with short track names, 17.8 MB with
200-character ones). In their own collection plays grow a collection of small documents
instead, which has no size limit (disk is the bound, watched by ``playlist_outbox_pending``),
and leave the playlist document untouched.

Why not everything in the collection: a create, update or delete must change the playlist
*and* store its event atomically, which only one document can do without transactions. These
are rare (a user edits a playlist, a client does not stream edits), and they are bounded: a
playlist holds at most ``PLAYLIST_OUTBOX_MAX_PER_PLAYLIST`` pending events (the filter
``{"pending_events.<max - 1>": {"$exists": false}}`` is part of the same atomic update). One
more update or delete answers 503 ``outbox_full`` with ``Retry-After`` and writes nothing;
it works again as soon as the relay has sent the backlog. 1,000 events of at most ~1.5 KB each
keep a document (itself at most ~1 MB: ``MAX_BODY_BYTES``) far below 16 MB.

The relay
---------
A relay (:class:`common.outbox.Relay`) reads the oldest pending events of both places
(``pending``: oldest ``written_at`` first, a playlist's own events in array order), publishes
them with publisher confirms, and only then forgets the confirmed ones of the pass together
(``mark_published_many``): one ``delete_many({_id: {$in: [...]}})`` for the collection, one
``$pull: {pending_events: {event_id: {$in: [...]}}}`` per playlist, and one ``delete_many`` of
the tombstones left empty (guarded by ``deleted: true`` and an empty ``pending_events``). A
crash between the publishes and that forgetting publishes the pass again later: consumers
dedupe by ``event_id``. Pending events are found through the multikey index on
``pending_events.written_at`` and the index on ``outbox.written_at``.

The relay (``manage.py outbox_relay``, :mod:`playlists.relay`) is the only publisher; the web
processes only write.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from pymongo.collection import Collection

from playlists import db
from playlists.documents import OutboxEvent, Playlist

EPOCH = datetime(1970, 1, 1)


def utcnow() -> datetime:
    """Naive UTC with millisecond precision: exactly what BSON stores and gives back."""
    now = datetime.now(UTC).replace(tzinfo=None)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def collection() -> Collection[dict[str, Any]]:
    """The playlists (with the pending events of their own changes)."""
    db.connect()
    return Playlist._get_collection()


def events_collection() -> Collection[dict[str, Any]]:
    """The ``outbox`` collection: events that change no playlist (plays)."""
    db.connect()
    return OutboxEvent._get_collection()


def entry(envelope: dict[str, Any], *, written_at: datetime | None = None) -> dict[str, Any]:
    """The outbox entry stored in ``pending_events`` for one envelope."""
    return {
        "event_id": envelope["event_id"],
        "written_at": written_at or utcnow(),
        "envelope": envelope,
    }


def _cap_path() -> str:
    """``pending_events.<n>``: the array's element at index n, which does not exist exactly when
    the array (or the field) holds at most n elements."""
    return f"pending_events.{max(1, settings.PLAYLIST_OUTBOX_MAX_PER_PLAYLIST) - 1}"


def below_cap() -> dict[str, Any]:
    """Filter fragment: fewer than PLAYLIST_OUTBOX_MAX_PER_PLAYLIST events are pending."""
    return {_cap_path(): {"$exists": False}}


def outbox_full(*, owner_id: str, playlist_id: Any) -> bool:
    """Whether this live playlist of ``owner_id`` holds the most pending events allowed."""
    full = {
        "_id": playlist_id,
        "owner_id": owner_id,
        "deleted": False,
        _cap_path(): {"$exists": True},
    }
    return bool(collection().count_documents(full, limit=1))


def record(envelope: dict[str, Any], *, owner_id: str) -> None:
    """Store an event that changes no playlist: one ``insert_one`` into ``outbox``."""
    events_collection().insert_one(
        {
            "_id": envelope["event_id"],
            "owner_id": owner_id,
            "written_at": utcnow(),
            "envelope": envelope,
        }
    )


class PlaylistOutboxStore:
    """:class:`common.outbox.OutboxStore` over ``pending_events`` and the ``outbox`` collection.

    One relay thread uses one store: ``pending()`` remembers where each event it returned
    lives, so that forgetting it goes straight to its document.
    """

    def __init__(self) -> None:
        # event_id -> the playlist holding it, from the last pending(); ids in ``outbox``.
        self._playlist_of: dict[str, Any] = {}
        self._tombstones: set[Any] = set()
        self._standalone: set[str] = set()
        # Where the next batch of plays probably ends (see _oldest_plays); None: unknown.
        self._plays_upper: datetime | None = None

    def pending(self, *, limit: int, older_than_seconds: float) -> list[dict[str, Any]]:
        limit = max(1, limit)
        cutoff = utcnow() - timedelta(seconds=max(0.0, older_than_seconds))
        # Both bounds: MongoDB type-brackets a lone $lte to dates anyway; SecantusDB scans
        # every document without the lower one (docs/mongodb-compat.md).
        window = {"$gte": EPOCH, "$lte": cutoff}
        cursor = (
            collection()
            .find({"pending_events.written_at": window}, {"pending_events": 1, "deleted": 1})
            .sort("pending_events.written_at", 1)
            .limit(limit)
        )
        found: list[tuple[datetime, int, dict[str, Any]]] = []
        self._playlist_of, self._tombstones, self._standalone = {}, set(), set()
        for document in cursor:
            if document.get("deleted"):
                self._tombstones.add(document["_id"])
            for position, item in enumerate(document.get("pending_events") or []):
                if item["written_at"] <= cutoff:
                    found.append((item["written_at"], position, item["envelope"]))
                    self._playlist_of[item["event_id"]] = document["_id"]
        # The limit oldest plays: together with the above, the limit oldest events overall.
        for document in self._oldest_plays(limit=limit, cutoff=cutoff):
            found.append((document["written_at"], 0, document["envelope"]))
            self._standalone.add(document["_id"])
        # Oldest first; inside one playlist the array order (= the order of its changes).
        found.sort(key=lambda row: (row[0], row[1]))
        return [envelope for _, _, envelope in found[:limit]]

    def _oldest_plays(self, *, limit: int, cutoff: datetime) -> list[dict[str, Any]]:
        """The ``limit`` oldest documents of ``outbox`` written by ``cutoff``, oldest first.

        SecantusDB reads the whole matching range before it sorts and limits, so with a
        backlog of thousands every scan cost a read of all of them (docs/mongodb-compat.md).
        The scan first tries the range up to a guess (``_plays_upper``: twice the span of the
        last full batch past its end), which holds the next batch when the backlog drains in
        order; the range still starts at EPOCH, so no older play is ever skipped. Only when
        the guess holds fewer than ``limit`` plays is the whole range read. MongoDB answers
        both the same way, from the index.
        """
        plays = events_collection()
        guess = self._plays_upper
        if guess is not None and guess < cutoff:
            window = {"$gte": EPOCH, "$lte": guess}
            batch = list(plays.find({"written_at": window}).sort("written_at", 1).limit(limit))
            if len(batch) >= limit:
                self._guess_next(batch)
                return batch
        window = {"$gte": EPOCH, "$lte": cutoff}
        batch = list(plays.find({"written_at": window}).sort("written_at", 1).limit(limit))
        if len(batch) >= limit:
            self._guess_next(batch)
        else:
            self._plays_upper = None  # a small backlog: the whole range is cheap
        return batch

    def _guess_next(self, batch: list[dict[str, Any]]) -> None:
        first, last = batch[0]["written_at"], batch[-1]["written_at"]
        self._plays_upper = last + max(2 * (last - first), timedelta(milliseconds=10))

    def mark_published(self, *, event_id: str) -> None:
        self.mark_published_many(event_ids=[event_id])

    def mark_published_many(self, *, event_ids: Sequence[str]) -> None:
        """Forget confirmed events: one ``delete_many`` in ``outbox``, one ``$pull`` per
        playlist, then one ``delete_many`` of the tombstones left with nothing to send.

        Ids not returned by the last ``pending()`` (another relay's, a test's) are looked up.
        """
        by_playlist: dict[Any, list[str]] = {}
        standalone: list[str] = []
        unknown: list[str] = []
        for event_id in dict.fromkeys(event_ids):
            playlist_id = self._playlist_of.pop(event_id, None)
            if playlist_id is not None:
                by_playlist.setdefault(playlist_id, []).append(event_id)
            elif event_id in self._standalone:
                self._standalone.discard(event_id)
                standalone.append(event_id)
            else:
                unknown.append(event_id)
        tombstones = {playlist_id for playlist_id in by_playlist if playlist_id in self._tombstones}
        if unknown:
            standalone.extend(unknown)
            holders = collection().find(
                {"pending_events.event_id": {"$in": unknown}}, {"_id": 1, "deleted": 1}
            )
            for document in holders:
                by_playlist.setdefault(document["_id"], []).extend(unknown)
                if document.get("deleted"):
                    tombstones.add(document["_id"])
        if standalone:
            events_collection().delete_many({"_id": {"$in": standalone}})
        for playlist_id, ids in by_playlist.items():
            collection().update_one(
                {"_id": playlist_id}, {"$pull": {"pending_events": {"event_id": {"$in": ids}}}}
            )
        if tombstones:
            # The filter re-checks: an event pushed meanwhile keeps the tombstone alive.
            collection().delete_many(
                {"_id": {"$in": list(tombstones)}, "deleted": True, "pending_events": {"$size": 0}}
            )

    def stats(self) -> tuple[int, float | None]:
        """(pending events in both places, unix time of the oldest one or None)."""
        embedded = collection().aggregate(
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
        standalone = events_collection().aggregate(
            [{"$group": {"_id": None, "n": {"$sum": 1}, "oldest": {"$min": "$written_at"}}}]
        )
        rows = [row for row in [*embedded, *standalone] if row["n"]]
        if not rows:
            return 0, None
        oldest: datetime = min(row["oldest"] for row in rows)
        return sum(int(row["n"]) for row in rows), oldest.replace(tzinfo=UTC).timestamp()
