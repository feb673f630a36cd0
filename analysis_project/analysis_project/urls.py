"""URLs of the analysis service."""

from analysis.admin import overview_view
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

urlpatterns = [
    path("", include("common.urls")),
    path("api/analysis", include("analysis.urls")),
    path("schema", SpectacularAPIView.as_view(), name="schema"),
    path("docs", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path(
        "admin/analysis/overview/", admin.site.admin_view(overview_view), name="analysis-overview"
    ),
    path("admin/", admin.site.urls),
]

handler400 = "common.errors.json_400"
handler403 = "common.errors.json_403"
handler404 = "common.errors.json_404"
handler500 = "common.errors.json_500"
