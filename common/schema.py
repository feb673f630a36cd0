"""drf-spectacular: how the signed user context appears in every service's OpenAPI schema.

Import it from an AppConfig.ready() to register the extension.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class SignedContextScheme(OpenApiAuthenticationExtension):
    """The gateway's signed ``X-User`` header (clients send ``Authorization: Bearer`` to it)."""

    target_class = "common.context.SignedContextAuthentication"
    name = "signedUserContext"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "X-User",
            "description": "Set by the gateway after it verified the bearer token, with "
            "X-User-Signature (HMAC-SHA256 over the time, a nonce, this service, the method, "
            "the path, the body's SHA-256 and X-User, keyed by this service's context key).",
        }
