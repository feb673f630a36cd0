"""Routes proxied to the upstream services (paths are forwarded unchanged)."""

from django.urls import re_path

from proxy.views import ProxyView

urlpatterns = [
    re_path(r"^api/auth(?:/.*)?$", ProxyView.as_view(upstream="auth"), name="proxy-auth"),
    re_path(
        r"^api/playlists(?:/.*)?$", ProxyView.as_view(upstream="playlist"), name="proxy-playlist"
    ),
    re_path(
        r"^api/analysis(?:/.*)?$", ProxyView.as_view(upstream="analysis"), name="proxy-analysis"
    ),
]
