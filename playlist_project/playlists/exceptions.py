"""Declarative HTTP errors of the playlist service; tests import the messages."""

from rest_framework import exceptions, status

PLAYLIST_NOT_FOUND = "Playlist not found."
PLAYLIST_CONFLICT = "The playlist changed while this request was applied; try again."
TRACK_OUT_OF_RANGE = "No track at this index in the playlist."
LIMIT_INVALID = "Must be an integer between 1 and {max_limit}."
OFFSET_INVALID = "Must be an integer of at least 0."
PLAYLIST_LIMIT = "You already have {max_playlists} playlists, the most allowed; delete one first."


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
