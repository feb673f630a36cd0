"""URLs of the analysis API (mounted under /api/analysis)."""

from django.urls import path

from analysis.views import GenrePlaysView, UserSummaryView

urlpatterns = [
    path("", UserSummaryView.as_view(), name="analysis-summary"),
    path("/genres", GenrePlaysView.as_view(), name="analysis-genres"),
]
