"""URLs of the analysis API (mounted under /api/analysis)."""

from django.urls import path

from analysis.apis import GenrePlaysApi, UserSummaryApi

urlpatterns = [
    path("", UserSummaryApi.as_view(), name="analysis-summary"),
    path("/genres", GenrePlaysApi.as_view(), name="analysis-genres"),
]
