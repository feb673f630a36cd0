"""The analysis Django app."""

from django.apps import AppConfig


class AnalysisConfig(AppConfig):
    """Event counters, their API, the worker task and the analytics admin."""

    name = "analysis"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from common import schema  # noqa: F401 - registers the drf-spectacular extension
