"""HTTP views of the playlist API: validate, call one service or selector, serialize."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpResponseNotModified
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
)
from rest_framework import status
from rest_framework.generics import GenericAPIView
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from playlists import cache, selectors, services
from playlists.accounts import AccountNotDeleted
from playlists.pagination import PlaylistPagination
from playlists.serializers import (
    ErrorSerializer,
    PlayAcceptedSerializer,
    PlaylistSerializer,
    PlaylistWriteSerializer,
    PlayRequestSerializer,
    ValidationErrorSerializer,
)

TAG = "playlists"
PLAYLIST_ID = OpenApiParameter(
    "playlist_id", str, OpenApiParameter.PATH, description="The playlist's id (24 hex digits)."
)
UNAUTHORIZED = OpenApiResponse(ErrorSerializer, description="Missing or invalid user context.")
NOT_FOUND = OpenApiResponse(
    ErrorSerializer, description="Unknown, malformed or someone else's playlist id."
)
INVALID = OpenApiResponse(ValidationErrorSerializer, description="Invalid input; names the field.")
CONFLICT = OpenApiResponse(
    ErrorSerializer, description="The playlist kept changing under this update."
)
LIMIT_REACHED = OpenApiResponse(
    ErrorSerializer,
    description="The caller already has the most playlists allowed (code "
    "`playlist_limit_reached`); nothing was written.",
)
NOT_MODIFIED = OpenApiResponse(description="Unchanged since the ETag in If-None-Match.")
ETAG_HEADER = OpenApiParameter(
    "If-None-Match",
    str,
    OpenApiParameter.HEADER,
    required=False,
    description="An ETag from an earlier answer: 304 if unchanged.",
)

CREATE_EXAMPLE = OpenApiExample(
    "New playlist",
    value={
        "name": "Road trip",
        "description": "Loud songs",
        "tracks": [
            "Song 1",
            {"title": "Song 2", "artist": "Band", "genre": "Rock", "duration_ms": 215000},
        ],
    },
    request_only=True,
)
PLAYLIST_EXAMPLE = OpenApiExample(
    "Playlist",
    value={
        "id": "6740c2a5e4b0a1b2c3d4e5f6",
        "name": "Road trip",
        "description": "Loud songs",
        "tracks": [
            {"title": "Song 1", "artist": None, "album": None, "genre": None, "duration_ms": None},
            {
                "title": "Song 2",
                "artist": "Band",
                "album": None,
                "genre": "rock",
                "duration_ms": 215000,
            },
        ],
        "owner_id": "42",
        "created_at": "2026-11-27T21:00:00.000000Z",
        "updated_at": "2026-11-27T21:00:00.000000Z",
    },
    response_only=True,
)


# Playlists read per round trip by a list: one can be ~1 MB and a page stops at its byte budget,
# so a few at a time (measured on SecantusDB: 200 small playlists 0.06 s at 10, 0.10 s at 4;
# a page of big ones reads 4 MB instead of 10 MB).
LIST_BATCH_SIZE = 4

# Documented bodies are JSON: tracks are nested objects, which form encodings cannot express
# (the form parsers stay for the browsable API's HTML forms).
JSON = "application/json"


def _plain(data: Any) -> Any:
    """Serializer output as plain JSON values (cacheable, hashable for the ETag)."""
    return json.loads(JSONRenderer().render(data))


def _user_id(request: Request) -> str:
    """The caller from the signed context (always a string)."""
    return str(request.user.id)


def _request_id(request: Request) -> str | None:
    return getattr(request, "request_id", None)


def _cached_answer(request: Request, *, what: str, build: Callable[[], Any]) -> Any:
    """A GET answer from the user's cache (or built and cached), with ETag / 304."""
    user_id = _user_id(request)
    key = cache.entry_key(user_id, what)
    entry = cache.get(key)
    if entry is None:
        entry = cache.put(key, _plain(build()), user_id=user_id)
    response: Any
    if cache.matches(request.headers.get("If-None-Match"), entry["etag"]):
        response = HttpResponseNotModified()
    else:
        response = Response(entry["data"])
    response["ETag"] = entry["etag"]
    response["Cache-Control"] = "private, no-cache"
    return response


class PlaylistListCreateView(GenericAPIView):
    """GET the caller's playlists (newest first, paginated); POST a new one."""

    permission_classes = [IsAuthenticated, AccountNotDeleted]
    serializer_class = PlaylistWriteSerializer
    pagination_class = PlaylistPagination
    filter_backends = ()

    def get_queryset(self) -> Any:
        # The browsable API asks for it (filter form); no Django model behind it.
        return selectors.playlist_list(owner_id=_user_id(self.request))

    @extend_schema(
        tags=[TAG],
        operation_id="playlists_list",
        summary="List my playlists",
        description="Newest first; `limit` 1-200 (default 50) and `offset` >= 0, else 400. "
        "A page holds at most `limit` playlists and ends early when the next one would take "
        "its JSON over the byte budget (2 MB by default; always at least one playlist): "
        "follow `next` (null on the last page) rather than adding `limit` to `offset`. "
        "Answers carry an ETag; a matching If-None-Match answers 304.",
        parameters=[ETAG_HEADER],
        responses={
            200: PlaylistSerializer(many=True),
            304: NOT_MODIFIED,
            400: INVALID,
            401: UNAUTHORIZED,
        },
        examples=[PLAYLIST_EXAMPLE],
    )
    def get(self, request: Request) -> Any:
        paginator = self.paginator
        assert isinstance(paginator, PlaylistPagination)
        limit, offset = paginator.validate(request)
        max_bytes = settings.PLAYLIST_LIST_MAX_BYTES

        def build() -> Any:
            queryset = self.get_queryset()
            # Read lazily, a few documents per round trip: the page stops at the budget
            # without ever holding `limit` big playlists in memory.
            items = queryset[offset : offset + limit].batch_size(LIST_BATCH_SIZE)
            page = paginator.paginate_within_budget(
                items,
                count=queryset.count(),
                request=request,
                serialize=lambda playlist: _plain(PlaylistSerializer(playlist).data),
                max_bytes=max_bytes,
            )
            return paginator.get_paginated_response(page).data

        # Only what changes the answer is in the key (links carry only limit and offset): any
        # other query string shares the entry instead of making a new one.
        what = f"list {request.build_absolute_uri(request.path)} {limit} {offset} {max_bytes}"
        return _cached_answer(request, what=what, build=build)

    @extend_schema(
        tags=[TAG],
        operation_id="playlists_create",
        summary="Create a playlist",
        request={JSON: PlaylistWriteSerializer},
        responses={
            201: PlaylistSerializer,
            400: INVALID,
            401: UNAUTHORIZED,
            409: LIMIT_REACHED,
        },
        examples=[CREATE_EXAMPLE, PLAYLIST_EXAMPLE],
        description="Publishes PlaylistCreated. At most 500 playlists per user by default "
        "(409 `playlist_limit_reached` beyond).",
    )
    def post(self, request: Request) -> Response:
        serializer = PlaylistWriteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        playlist = services.playlist_create(
            owner_id=_user_id(request), request_id=_request_id(request), **serializer.validated_data
        )
        response = Response(PlaylistSerializer(playlist).data, status=status.HTTP_201_CREATED)
        response["Location"] = f"/api/playlists/{playlist.id}"
        return response


class PlaylistDetailView(GenericAPIView):
    """GET, PUT (whole body), PATCH (part of it) or DELETE one of the caller's playlists."""

    permission_classes = [IsAuthenticated, AccountNotDeleted]
    serializer_class = PlaylistWriteSerializer

    def get_object(self) -> Any:
        # DRF's OPTIONS metadata and the browsable API's forms ask for it (500 without it,
        # found by schemathesis): the caller's playlist, else 404.
        return selectors.playlist_get(
            owner_id=_user_id(self.request), playlist_id=self.kwargs["playlist_id"]
        )

    @extend_schema(
        tags=[TAG],
        operation_id="playlists_retrieve",
        summary="Get a playlist",
        description="404 for an unknown, malformed or someone else's id. ETag / 304 as for "
        "the list.",
        parameters=[PLAYLIST_ID, ETAG_HEADER],
        responses={200: PlaylistSerializer, 304: NOT_MODIFIED, 401: UNAUTHORIZED, 404: NOT_FOUND},
        examples=[PLAYLIST_EXAMPLE],
    )
    def get(self, request: Request, playlist_id: str) -> Any:
        selectors.parse_playlist_id(playlist_id)
        return _cached_answer(
            request,
            what=f"detail {playlist_id}",
            build=lambda: (
                PlaylistSerializer(
                    selectors.playlist_get(owner_id=_user_id(request), playlist_id=playlist_id)
                ).data
            ),
        )

    def _update(self, request: Request, playlist_id: str, *, partial: bool) -> Response:
        selectors.parse_playlist_id(playlist_id)
        serializer = PlaylistWriteSerializer(data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        playlist = services.playlist_update(
            owner_id=_user_id(request),
            playlist_id=playlist_id,
            changes=dict(serializer.validated_data),
            request_id=_request_id(request),
        )
        return Response(PlaylistSerializer(playlist).data)

    @extend_schema(
        tags=[TAG],
        operation_id="playlists_update",
        summary="Replace a playlist",
        parameters=[PLAYLIST_ID],
        request={JSON: PlaylistWriteSerializer},
        responses={
            200: PlaylistSerializer,
            400: INVALID,
            401: UNAUTHORIZED,
            404: NOT_FOUND,
            409: CONFLICT,
        },
        examples=[CREATE_EXAMPLE, PLAYLIST_EXAMPLE],
        description="The whole body: a missing description or tracks list is emptied. "
        "Publishes PlaylistUpdated.",
    )
    def put(self, request: Request, playlist_id: str) -> Response:
        return self._update(request, playlist_id, partial=False)

    @extend_schema(
        tags=[TAG],
        operation_id="playlists_partial_update",
        summary="Change a playlist",
        parameters=[PLAYLIST_ID],
        request={JSON: PlaylistWriteSerializer(partial=True)},
        responses={
            200: PlaylistSerializer,
            400: INVALID,
            401: UNAUTHORIZED,
            404: NOT_FOUND,
            409: CONFLICT,
        },
        examples=[
            OpenApiExample("Rename", value={"name": "Night drive"}, request_only=True),
            PLAYLIST_EXAMPLE,
        ],
        description="Only the fields given change. Publishes PlaylistUpdated.",
    )
    def patch(self, request: Request, playlist_id: str) -> Response:
        return self._update(request, playlist_id, partial=True)

    @extend_schema(
        tags=[TAG],
        operation_id="playlists_destroy",
        summary="Delete a playlist",
        parameters=[PLAYLIST_ID],
        responses={
            204: OpenApiResponse(description="Deleted."),
            401: UNAUTHORIZED,
            404: NOT_FOUND,
            409: CONFLICT,
        },
        description="Publishes PlaylistDeleted (with the track count and genres).",
    )
    def delete(self, request: Request, playlist_id: str) -> Response:
        services.playlist_delete(
            owner_id=_user_id(request), playlist_id=playlist_id, request_id=_request_id(request)
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class PlaylistPlaysView(GenericAPIView):
    """POST a play of one track of the caller's playlist."""

    permission_classes = [IsAuthenticated, AccountNotDeleted]
    serializer_class = PlayRequestSerializer

    @extend_schema(
        tags=[TAG],
        operation_id="playlists_play",
        summary="Play a track",
        parameters=[PLAYLIST_ID],
        request={JSON: PlayRequestSerializer},
        responses={
            202: PlayAcceptedSerializer,
            400: INVALID,
            401: UNAUTHORIZED,
            404: NOT_FOUND,
            409: CONFLICT,
        },
        examples=[OpenApiExample("Play the first track", value={"track": 0}, request_only=True)],
        description="Publishes TrackPlayed with the track's title, artist and genre.",
    )
    def post(self, request: Request, playlist_id: str) -> Response:
        selectors.parse_playlist_id(playlist_id)
        serializer = PlayRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        envelope = services.playlist_play(
            owner_id=_user_id(request),
            playlist_id=playlist_id,
            track_index=serializer.validated_data["track"],
            request_id=_request_id(request),
        )
        body = {
            "playlist_id": playlist_id,
            "track": serializer.validated_data["track"],
            "event_id": envelope["event_id"],
        }
        return Response(PlayAcceptedSerializer(body).data, status=status.HTTP_202_ACCEPTED)
