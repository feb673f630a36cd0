"""URLs of the gateway service: operations, then the proxied public API."""

from django.urls import include, path

urlpatterns = [
    path("", include("common.urls")),
    path("", include("proxy.urls")),
]

handler400 = "common.errors.json_400"
handler403 = "common.errors.json_403"
handler404 = "common.errors.json_404"
handler500 = "common.errors.json_500"
