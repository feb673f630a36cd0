"""Request and response shapes of the playlist API."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from rest_framework import serializers

# Re-exported for the views; defined once for every service.
from common.serializers import ErrorSerializer, ValidationErrorSerializer  # noqa: F401
from playlists.documents import DESCRIPTION_MAX, NAME_MAX, TEXT_MAX, TITLE_MAX

DURATION_MAX_MS = 2**31 - 1


class StrictCharField(serializers.CharField):
    """A string, and only a string: DRF's CharField would store the number 0 as "0"."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data))


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer, and only that: DRF's IntegerField also takes "5" and 5.0."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return int(super().to_internal_value(data))


class TrackSerializer(serializers.Serializer):
    """A track; on input a plain string is accepted as ``{"title": <string>}``."""

    title = StrictCharField(max_length=TITLE_MAX)
    artist = StrictCharField(max_length=TEXT_MAX, required=False, allow_null=True, allow_blank=True)
    album = StrictCharField(max_length=TEXT_MAX, required=False, allow_null=True, allow_blank=True)
    genre = StrictCharField(
        max_length=TEXT_MAX,
        required=False,
        allow_null=True,
        allow_blank=True,
        help_text="Stored normalised: trimmed, lower case.",
    )
    duration_ms = StrictIntegerField(
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


class TrackInputListSerializer(serializers.ListSerializer):
    """Tracks on input: each a track object or just its title."""


class TrackInputSerializer(TrackSerializer):
    class Meta:
        list_serializer_class = TrackInputListSerializer


class TrackInputListSchema(OpenApiSerializerFieldExtension):
    """Documents both track forms (schemathesis found only the object one documented)."""

    target_class = TrackInputListSerializer

    def map_serializer_field(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        track = auto_schema.resolve_serializer(TrackSerializer, direction)
        title = {"type": "string", "minLength": 1, "maxLength": TITLE_MAX}
        return {
            "type": "array",
            "items": {"oneOf": [track.ref, title]},
            "maxItems": settings.PLAYLIST_MAX_TRACKS,
        }


class PlaylistWriteSerializer(serializers.Serializer):
    """Body of POST and PUT (all of it) and PATCH (any part of it)."""

    name = StrictCharField(max_length=NAME_MAX)
    description = StrictCharField(
        max_length=DESCRIPTION_MAX, required=False, allow_blank=True, default=""
    )
    tracks = TrackInputSerializer(
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
