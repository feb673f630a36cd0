"""URLs of the gateway service: the proxied public API first (the hot path resolves in one
step), then operations, API docs and browser sign-in (no path of theirs starts with a proxied
prefix: /api/auth, /api/playlists, /api/analysis)."""

from django.conf import settings
from django.urls import include, path

urlpatterns = [
    path("", include("proxy.urls")),
    path("", include("common.urls")),
    # Public API docs: /api/schema, /api/docs and /api/redoc are the gateway's own.
    path("", include("apidocs.urls")),
    # Browser sign-in/out for the browsable API (/api/browser/...).
    path("api/browser/", include("browser.urls")),
]

if settings.GATEWAY_BENCH_ENDPOINTS:  # bench/gateway.py only (the gateway_bench app)
    urlpatterns.append(path("bench/", include("gateway_bench.urls")))

handler400 = "common.errors.json_400"
handler403 = "common.errors.json_403"
handler404 = "common.errors.json_404"
handler500 = "common.errors.json_500"
