"""URLs of the gateway service: operations, then the proxied public API."""

from django.urls import include, path

urlpatterns = [
    path("", include("common.urls")),
    # Public API docs: before the proxy, /api/schema, /api/docs and /api/redoc are the gateway's.
    path("", include("apidocs.urls")),
    # Browser sign-in/out for the browsable API (before the proxy: /api/browser/...).
    path("api/browser/", include("browser.urls")),
    path("", include("proxy.urls")),
]

handler400 = "common.errors.json_400"
handler403 = "common.errors.json_403"
handler404 = "common.errors.json_404"
handler500 = "common.errors.json_500"
