"""The OpenAPI schema generates without warnings; docs and the browsable API render."""

from __future__ import annotations

import pytest
import yaml
from django.core.management import call_command

from accounts.tests.conftest import JWKS, LOGIN, ME, REGISTER

pytestmark = pytest.mark.django_db


def test_schema_generates_without_warnings_and_validates(tmp_path):
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--fail-on-warn", "--validate", "--file", str(out))
    schema = yaml.safe_load(out.read_text())
    paths = schema["paths"]
    assert set(paths) == {
        "/api/auth/register",
        "/api/auth/login",
        "/api/auth/refresh",
        "/api/auth/logout",
        "/api/auth/logout-all",
        "/api/auth/me",
        "/api/auth/.well-known/jwks.json",
    }
    assert set(paths["/api/auth/me"]) == {"get", "patch", "delete"}
    login = paths["/api/auth/login"]["post"]
    assert {"200", "400", "401", "429"} <= set(login["responses"])
    assert "signedUserContext" in schema["components"]["securitySchemes"]
    # A body that is not JSON at all answers 400 without field errors.
    assert "errors" not in schema["components"]["schemas"]["ValidationError"].get("required", [])


def test_docs_and_schema_pages_answer(client):
    assert client.get("/schema").status_code == 200
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert b"swagger" in docs.content.lower()


def test_browsable_api_renders(client, user):
    from accounts.tests.conftest import context_headers

    page = client.get(ME, HTTP_ACCEPT="text/html", **context_headers(user))
    assert page.status_code == 200
    assert page["Content-Type"].startswith("text/html")
    assert user.username.encode() in page.content
    for path in (REGISTER, LOGIN):
        form = client.get(path, HTTP_ACCEPT="text/html")
        assert form.status_code == 405  # POST only, but the page with its form renders
        assert form["Content-Type"].startswith("text/html")
        assert b"<form" in form.content
    assert client.get(JWKS, HTTP_ACCEPT="text/html").status_code == 200


def test_unknown_path_is_json_404(client):
    response = client.get("/api/auth/nope")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
