"""URLs of the playlist service."""

from django.urls import include, path

urlpatterns = [
    path("", include("common.urls")),
]

handler400 = "common.errors.json_400"
handler403 = "common.errors.json_403"
handler404 = "common.errors.json_404"
handler500 = "common.errors.json_500"
