"""The playlist service's Django project."""

from playlist_project.celery import app as celery_app

__all__ = ["celery_app"]
