"""Input and output shapes of the analysis API."""

from rest_framework import serializers

from analysis.selectors import MAX_GENRES

DEFAULT_GENRES_LIMIT = 10


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

    scope = serializers.ChoiceField(choices=["me", "global"], default="me",
                                    help_text="`me`: the caller's plays; `global`: everyone's.")
    limit = serializers.IntegerField(min_value=1, max_value=MAX_GENRES,
                                     default=DEFAULT_GENRES_LIMIT)
