"""The playlists app."""

from django.apps import AppConfig


class PlaylistsConfig(AppConfig):
    """Connects mongoengine when Django starts (any process: web, relay, worker, tests)."""

    name = "playlists"

    def ready(self) -> None:
        import common.schema  # noqa: F401 - registers the signed-context scheme
        from playlists import db, documents

        db.connect()
        documents.ensure_indexes()
