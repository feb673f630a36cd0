"""Readiness check of the playlist service's own dependency (MongoDB)."""

from playlists import db


def check_mongodb() -> None:
    db.ping()
