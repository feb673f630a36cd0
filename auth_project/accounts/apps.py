"""App configuration of the accounts app."""

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """Users, tokens, the outbox; registers the OpenAPI extension of the context auth."""

    name = "accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from common import schema  # noqa: F401 - registers the drf-spectacular extension
