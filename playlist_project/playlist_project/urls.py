"""URLs of the playlist service."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from playlists.ops import metrics_view

urlpatterns = [
    # Before common.urls: same /metrics, plus the outbox gauges measured at scrape time.
    path("metrics", metrics_view, name="prometheus-django-metrics"),
    path("", include("common.urls")),
    path("schema", SpectacularAPIView.as_view(), name="schema"),
    path("docs", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("", include("playlists.urls")),
]

handler400 = "common.errors.json_400"
handler403 = "common.errors.json_403"
handler404 = "common.errors.json_404"
handler500 = "common.errors.json_500"
