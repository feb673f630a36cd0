"""The gateway's own part of the schema generates without warnings and leaves the proxy out."""

from __future__ import annotations

import json

from django.core.management import call_command

from apidocs.selectors import gateway_schema_get


def test_gateway_schema_generates_without_warnings(tmp_path):
    target = tmp_path / "gateway.json"
    call_command(
        "spectacular",
        "--generator-class",
        "apidocs.selectors.OwnSchemaGenerator",
        "--format",
        "openapi-json",
        "--fail-on-warn",
        "--validate",
        "--file",
        str(target),
    )
    schema = json.loads(target.read_text())
    # The proxied routes are documented by the services, the docs views by nobody.
    assert not any(
        path.startswith(("/api/auth", "/api/playlists", "/api/analysis"))
        for path in schema["paths"]
    )
    assert not {"/api/schema", "/api/docs", "/api/redoc"} & set(schema["paths"])


def test_own_schema_is_generated_once_per_process():
    assert gateway_schema_get() is gateway_schema_get()
