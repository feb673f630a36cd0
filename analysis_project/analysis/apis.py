"""HTTP views of the analysis API: validate, call one selector, serialize."""

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from analysis.selectors import genre_plays_list, user_summary_get
from analysis.serializers import (
    GenreCountSerializer,
    GenresQuerySerializer,
    UserSummarySerializer,
)


class UserSummaryApi(APIView):
    """GET /api/analysis: the caller's counters."""

    @extend_schema(operation_id="analysis_summary", responses=UserSummarySerializer,
                   summary="The caller's playlist and play counters and top genres")
    def get(self, request: Request) -> Response:
        summary = user_summary_get(user_id=str(request.user.pk))
        return Response(UserSummarySerializer(summary).data)


class GenrePlaysApi(APIView):
    """GET /api/analysis/genres: genres by plays, the caller's or everyone's."""

    @extend_schema(operation_id="analysis_genres", parameters=[GenresQuerySerializer],
                   responses=GenreCountSerializer(many=True),
                   summary="Genres by plays, most played first")
    def get(self, request: Request) -> Response:
        query = GenresQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        genres = genre_plays_list(scope=query.validated_data["scope"],
                                  user_id=str(request.user.pk),
                                  limit=query.validated_data["limit"])
        return Response(GenreCountSerializer(genres, many=True).data)
