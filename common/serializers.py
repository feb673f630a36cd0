"""The error answers every service gives (see common.errors), as DRF serializers for the schema.

One definition for every service, so the gateway's merged schema has one ``Error`` and one
``ValidationError`` component. Import them from here (the service ``serializers`` modules
re-export them for their views).
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers


class ErrorSerializer(serializers.Serializer):
    """Every error answer (common.errors)."""

    detail = serializers.CharField()
    code = serializers.CharField()


@extend_schema_field(
    {
        "anyOf": [
            {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "object"}]}},
            {"type": "object", "description": "Errors of a nested field, keyed by index/name."},
        ]
    }
)
class FieldErrorsField(serializers.JSONField):
    """The messages of one field: a list, or nested like ``{"0": {"artist": [...]}}``."""


class ValidationErrorSerializer(ErrorSerializer):
    """A 400: ``errors`` names the fields (absent when the input could not be parsed at all)."""

    # A declared field (the metaclass pops it), not Serializer.errors.
    errors = serializers.DictField(  # type: ignore[assignment]
        child=FieldErrorsField(), required=False
    )
