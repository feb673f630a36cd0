"""The OpenAPI schema generates without warnings; the docs page answers."""

from __future__ import annotations

import yaml
from django.core.management import call_command


def test_schema_generates_without_warnings(tmp_path):
    target = tmp_path / "schema.yaml"
    call_command("spectacular", "--fail-on-warn", "--validate", "--file", str(target))
    schema = yaml.safe_load(target.read_text())
    paths = schema["paths"]
    assert set(paths) >= {
        "/api/playlists",
        "/api/playlists/{playlist_id}",
        "/api/playlists/{playlist_id}/plays",
    }
    assert set(paths["/api/playlists/{playlist_id}"]) >= {"get", "put", "patch", "delete"}
    listing = paths["/api/playlists"]["get"]
    assert {p["name"] for p in listing["parameters"]} >= {"limit", "offset"}
    assert "404" in paths["/api/playlists/{playlist_id}"]["get"]["responses"]
    assert "202" in paths["/api/playlists/{playlist_id}/plays"]["post"]["responses"]


def test_schema_and_docs_pages_answer(client):
    assert client.get("/schema").status_code == 200
    assert client.get("/docs").status_code == 200
