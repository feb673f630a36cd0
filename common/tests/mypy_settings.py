"""Minimal settings so mypy's Django plugin can load ``common`` without a project."""

SECRET_KEY = "mypy"
INTERNAL_SECRET = "mypy"
SERVICE_NAME = "mypy"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "rest_framework"]
HEALTH_CHECKS: list[str] = []
CELERY_BROKER_URL = "redis://127.0.0.1:6379/1"
