"""The gateway's public API documentation: one OpenAPI schema merged from the services."""
