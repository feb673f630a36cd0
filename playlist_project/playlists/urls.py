"""The public paths this service serves (the gateway forwards them unchanged)."""

from django.urls import path

from playlists import views

urlpatterns = [
    path("api/playlists", views.PlaylistListCreateView.as_view(), name="playlist-list"),
    path(
        "api/playlists/<str:playlist_id>",
        views.PlaylistDetailView.as_view(),
        name="playlist-detail",
    ),
    path(
        "api/playlists/<str:playlist_id>/plays",
        views.PlaylistPlaysView.as_view(),
        name="playlist-plays",
    ),
]
