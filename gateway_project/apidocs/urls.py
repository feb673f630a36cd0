"""Routes of the public API documentation (before the proxy's /api/... routes)."""

from django.urls import path

from apidocs.views import PublicSchemaView, RedocView, SwaggerView

urlpatterns = [
    path("api/schema", PublicSchemaView.as_view(), name="api-schema"),
    path("api/docs", SwaggerView.as_view(), name="api-docs"),
    path("api/redoc", RedocView.as_view(), name="api-redoc"),
]
