"""HTTP views of the analysis API: validate, call one selector, serialize."""

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from analysis.selectors import genre_plays_list, user_summary_get
from analysis.serializers import (
    ErrorSerializer,
    GenreCountSerializer,
    GenresQuerySerializer,
    UserSummarySerializer,
    ValidationErrorSerializer,
)

UNAUTHENTICATED = OpenApiResponse(ErrorSerializer, description="Missing or invalid user context.")
_GENRES = [{"genre": "rock", "plays": 12}, {"genre": "jazz", "plays": 5}]
SUMMARY_EXAMPLE = OpenApiExample(
    "Summary",
    value={
        "user_id": "42",
        "playlists_created": 3,
        "playlists_active": 2,
        "plays": 17,
        "top_genres": _GENRES,
        "updated_at": "2026-11-27T21:05:00Z",
    },
    response_only=True,
)
# One item: drf-spectacular wraps the example of a list answer in a list.
GENRES_EXAMPLE = OpenApiExample("Genres", value=_GENRES[0], response_only=True)
# Output serializers built once: a DRF serializer deep-copies its declared fields on every
# instantiation, a seventh of a warm read's CPU (docs/performance.md). Representation keeps no
# per-call state, so one instance serves every request and thread.
_SUMMARY_OUT = UserSummarySerializer()
_GENRES_OUT = GenreCountSerializer(many=True)


class UserSummaryView(APIView):
    """GET /api/analysis: the caller's counters."""

    @extend_schema(
        operation_id="analysis_summary",
        responses={200: UserSummarySerializer, 401: UNAUTHENTICATED},
        examples=[SUMMARY_EXAMPLE],
        summary="The caller's playlist and play counters and top genres",
    )
    def get(self, request: Request) -> Response:
        summary = user_summary_get(user_id=str(request.user.pk))
        return Response(_SUMMARY_OUT.to_representation(summary))


class GenrePlaysView(APIView):
    """GET /api/analysis/genres: genres by plays, the caller's or everyone's."""

    @extend_schema(
        operation_id="analysis_genres",
        parameters=[GenresQuerySerializer],
        responses={
            200: GenreCountSerializer(many=True),
            400: OpenApiResponse(ValidationErrorSerializer, description="Invalid scope or limit."),
            401: UNAUTHENTICATED,
        },
        examples=[GENRES_EXAMPLE],
        summary="Genres by plays, most played first",
    )
    def get(self, request: Request) -> Response:
        query = GenresQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        genres = genre_plays_list(
            scope=query.validated_data["scope"],
            user_id=str(request.user.pk),
            limit=query.validated_data["limit"],
        )
        return Response(_GENRES_OUT.to_representation(genres))
