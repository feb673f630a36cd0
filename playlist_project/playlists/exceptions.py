"""Declarative HTTP errors of the playlist service; tests import the messages."""

import logging
from typing import Any

from pymongo.errors import ConnectionFailure
from rest_framework import exceptions, status
from rest_framework.response import Response

from common.errors import exception_handler as common_exception_handler

logger = logging.getLogger(__name__)

PLAYLIST_NOT_FOUND = "Playlist not found."
PLAYLIST_CONFLICT = "The playlist changed while this request was applied; try again."
TRACK_OUT_OF_RANGE = "No track at this index in the playlist."
LIMIT_INVALID = "Must be an integer between 1 and {max_limit}."
OFFSET_INVALID = "Must be an integer of at least 0."
PLAYLIST_LIMIT = "You already have {max_playlists} playlists, the most allowed; delete one first."
STORE_UNAVAILABLE = "The playlist store is unavailable; try again shortly."
STORE_RETRY_AFTER_SECONDS = 5
OUTBOX_FULL = "Too many changes of this playlist are waiting to be published; try again shortly."
OUTBOX_RETRY_AFTER_SECONDS = 30
ACCOUNT_DELETED = "This account was deleted."


class PlaylistNotFound(exceptions.NotFound):
    """Unknown, malformed or someone else's playlist id: the same answer for all three."""

    default_detail = PLAYLIST_NOT_FOUND
    default_code = "playlist_not_found"


class PlaylistConflict(exceptions.APIException):
    """Concurrent writers kept changing the playlist under this update."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = PLAYLIST_CONFLICT
    default_code = "playlist_conflict"


class PlaylistLimitReached(exceptions.APIException):
    """The caller already holds PLAYLIST_MAX_PER_USER playlists: nothing was written."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = PLAYLIST_LIMIT
    default_code = "playlist_limit_reached"

    def __init__(self, *, max_playlists: int) -> None:
        super().__init__(detail=PLAYLIST_LIMIT.format(max_playlists=max_playlists))


class StoreUnavailable(exceptions.APIException):
    """MongoDB could not be reached (no server, a dropped connection, a timeout)."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = STORE_UNAVAILABLE
    default_code = "store_unavailable"
    retry_after = STORE_RETRY_AFTER_SECONDS


class AccountDeleted(exceptions.AuthenticationFailed):
    """The caller's account was deleted (its UserDeleted event was handled): no more writes."""

    default_detail = ACCOUNT_DELETED
    default_code = "account_deleted"


class OutboxFull(exceptions.APIException):
    """The playlist already holds PLAYLIST_OUTBOX_MAX_PER_PLAYLIST unpublished events (the
    broker has been down a while): this update or delete was not written."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = OUTBOX_FULL
    default_code = "outbox_full"
    retry_after = OUTBOX_RETRY_AFTER_SECONDS


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """common's handler, plus: MongoDB unreachable is a 503 with Retry-After, not a 500, and
    every 503 of this service names when to try again (``Retry-After``).

    A write refused this way was not acknowledged; if the connection dropped after MongoDB
    applied it, the change and its event are both there (one single-document write), so the
    event is still published and counted once.
    """
    if isinstance(exc, ConnectionFailure):  # AutoReconnect, NetworkTimeout, server selection
        logger.warning("playlist store unavailable: %s", type(exc).__name__)
        exc = StoreUnavailable()
    response = common_exception_handler(exc, context)
    retry_after = getattr(exc, "retry_after", None)
    if response is not None and retry_after is not None:
        response["Retry-After"] = str(retry_after)
    return response
