"""Input and output shapes of the analysis API."""

from typing import Any

from rest_framework import serializers

from analysis.selectors import MAX_GENRES

# Re-exported for the views; defined once for every service.
from common.serializers import ErrorSerializer, ValidationErrorSerializer  # noqa: F401

DEFAULT_GENRES_LIMIT = 10
BLANK_PARAMETER = "This parameter may not be blank."


class GenreCountSerializer(serializers.Serializer):
    """One genre and its plays."""

    genre = serializers.CharField()
    plays = serializers.IntegerField()


class UserSummarySerializer(serializers.Serializer):
    """The caller's analytics."""

    user_id = serializers.CharField()
    playlists_created = serializers.IntegerField()
    playlists_active = serializers.IntegerField()
    plays = serializers.IntegerField()
    top_genres = GenreCountSerializer(many=True, help_text="The caller's top 5 genres by plays.")
    updated_at = serializers.DateTimeField(allow_null=True)


class GenresQuerySerializer(serializers.Serializer):
    """Query parameters of GET /api/analysis/genres."""

    scope = serializers.ChoiceField(
        choices=["me", "global"],
        default="me",
        help_text="`me`: the caller's plays; `global`: everyone's.",
    )
    limit = serializers.IntegerField(
        min_value=1, max_value=MAX_GENRES, default=DEFAULT_GENRES_LIMIT
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # DRF turns a blank query parameter into its default; the contract says blank is invalid.
        blank = [name for name in self.fields if self.initial_data.get(name) == ""]
        if blank:
            raise serializers.ValidationError({name: [BLANK_PARAMETER] for name in blank})
        return attrs
