"""The public API documentation: the merged schema, Swagger UI and ReDoc (no token needed)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.renderers import (
    OpenApiJsonRenderer,
    OpenApiJsonRenderer2,
    OpenApiYamlRenderer,
    OpenApiYamlRenderer2,
)
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularRedocView, SpectacularSwaggerView
from rest_framework import permissions
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apidocs.selectors import public_schema_get

SCHEMA_URL = "/api/schema"
DOCS_TITLE = "Music streaming platform API"


class PublicSchemaView(APIView):
    """OpenAPI 3 schema of the whole platform: YAML by default, ``?format=json`` for JSON."""

    renderer_classes = [
        OpenApiYamlRenderer,
        OpenApiYamlRenderer2,
        OpenApiJsonRenderer,
        OpenApiJsonRenderer2,
    ]
    authentication_classes: list[Any] = []
    permission_classes = [permissions.AllowAny]

    @extend_schema(exclude=True)
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return Response(
            public_schema_get(),
            headers={"Content-Disposition": 'inline; filename="musicstream-api.yaml"'}
            if request.accepted_renderer.format == "yaml"
            else {},
        )


class SwaggerView(SpectacularSwaggerView):
    """Swagger UI on the public schema, assets from drf-spectacular-sidecar (local /static/)."""

    url = SCHEMA_URL
    title = DOCS_TITLE
    authentication_classes: list[Any] = []
    permission_classes = [permissions.AllowAny]

    @extend_schema(exclude=True)
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        response = super().get(request, *args, **kwargs)
        # No online validator badge: the page loads nothing from the internet.
        response.data["settings"] = (
            '{"deepLinking": true, "validatorUrl": null, "persistAuthorization": true}'
        )
        return response


class RedocView(SpectacularRedocView):
    """ReDoc on the public schema; its template drops drf-spectacular's Google Fonts links."""

    url = SCHEMA_URL
    title = DOCS_TITLE
    template_name = "apidocs/redoc.html"
    authentication_classes: list[Any] = []
    permission_classes = [permissions.AllowAny]
