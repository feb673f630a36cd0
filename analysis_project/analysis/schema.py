"""drf-spectacular: how the signed user context appears in this service's OpenAPI schema.

Belongs in ``common`` (every service authenticates this way); a copy there takes precedence
(this one has a lower priority).
"""

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class SignedContextScheme(OpenApiAuthenticationExtension):
    """The gateway's ``X-User`` + ``X-User-Signature`` headers."""

    target_class = "common.context.SignedContextAuthentication"
    name = "SignedUserContext"
    priority = -1

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "X-User",
            "description": "Set by the gateway from the caller's JWT, with an HMAC signature "
            "in X-User-Signature; clients call through the gateway with a Bearer token.",
        }
