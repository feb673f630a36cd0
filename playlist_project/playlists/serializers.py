"""Request and response shapes of the playlist API."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import serializers

from playlists.documents import DESCRIPTION_MAX, NAME_MAX, TEXT_MAX, TITLE_MAX

DURATION_MAX_MS = 2**31 - 1


class TrackSerializer(serializers.Serializer):
    """A track; on input a plain string is accepted as ``{"title": <string>}``."""

    title = serializers.CharField(max_length=TITLE_MAX)
    artist = serializers.CharField(
        max_length=TEXT_MAX, required=False, allow_null=True, allow_blank=True
    )
    album = serializers.CharField(
        max_length=TEXT_MAX, required=False, allow_null=True, allow_blank=True
    )
    genre = serializers.CharField(
        max_length=TEXT_MAX,
        required=False,
        allow_null=True,
        allow_blank=True,
        help_text="Stored normalised: trimmed, lower case.",
    )
    duration_ms = serializers.IntegerField(
        min_value=0, max_value=DURATION_MAX_MS, required=False, allow_null=True
    )

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if isinstance(data, str):
            data = {"title": data}
        value = super().to_internal_value(data)
        for key in ("artist", "album", "genre"):
            if key in value and not value[key]:
                value[key] = None
        if value.get("genre"):
            value["genre"] = value["genre"].strip().lower()
        return {key: item for key, item in value.items() if item is not None}


class PlaylistWriteSerializer(serializers.Serializer):
    """Body of POST and PUT (all of it) and PATCH (any part of it)."""

    name = serializers.CharField(max_length=NAME_MAX)
    description = serializers.CharField(
        max_length=DESCRIPTION_MAX, required=False, allow_blank=True, default=""
    )
    tracks = TrackSerializer(
        many=True, required=False, default=list, help_text="Track objects or plain title strings."
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Checked before any track is validated, so an oversized list costs nothing.
        self.fields["tracks"].max_length = settings.PLAYLIST_MAX_TRACKS


class TrackOutputSerializer(serializers.Serializer):
    title = serializers.CharField()
    artist = serializers.CharField(allow_null=True)
    album = serializers.CharField(allow_null=True)
    genre = serializers.CharField(allow_null=True)
    duration_ms = serializers.IntegerField(allow_null=True)


class PlaylistSerializer(serializers.Serializer):
    """A playlist as the API answers it."""

    id = serializers.CharField(read_only=True)
    name = serializers.CharField()
    description = serializers.CharField()
    tracks = TrackOutputSerializer(many=True)
    owner_id = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class PlayRequestSerializer(serializers.Serializer):
    track = serializers.IntegerField(min_value=0, help_text="Index of the track (from 0).")


class PlayAcceptedSerializer(serializers.Serializer):
    playlist_id = serializers.CharField()
    track = serializers.IntegerField()
    event_id = serializers.UUIDField()


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
    code = serializers.CharField()


class ValidationErrorSerializer(ErrorSerializer):
    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))
