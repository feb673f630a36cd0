"""The auth service's Django project."""

# Load the Celery app with Django, so shared tasks and publishing use it.
from .celery import app as celery_app

__all__ = ("celery_app",)
