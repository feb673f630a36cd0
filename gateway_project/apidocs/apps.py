"""Django app config of the gateway's API documentation."""

from django.apps import AppConfig


class ApiDocsConfig(AppConfig):
    """Serves /api/schema (merged from the upstreams' own schemas), /api/docs and /api/redoc."""

    name = "apidocs"
    verbose_name = "Gateway API documentation"
