"""The OpenAPI schema generates without warnings; the docs page answers."""

from __future__ import annotations

import json

import jsonschema
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
    # The bounds the paginator enforces are in the contract (schemathesis checks both ways).
    bounds = {p["name"]: p["schema"] for p in listing["parameters"]}
    assert (bounds["limit"]["minimum"], bounds["limit"]["maximum"]) == (1, 200)
    assert (bounds["offset"]["minimum"], bounds["offset"]["maximum"]) == (0, 999_999_999)
    # A body that is not JSON at all answers 400 without field errors.
    validation = schema["components"]["schemas"]["ValidationError"]
    assert "errors" not in validation.get("required", [])
    # Nested fields (tracks) give nested errors: {"tracks": {"0": {"artist": [...]}}}.
    field_errors = validation["properties"]["errors"]["additionalProperties"]["anyOf"]
    assert {"type": "object", "description": field_errors[1]["description"]} in field_errors
    # A track is an object or just its title: both documented.
    tracks = schema["components"]["schemas"]["PlaylistWriteRequest"]["properties"]["tracks"]
    assert tracks["items"]["oneOf"][0] == {"$ref": "#/components/schemas/TrackRequest"}
    assert tracks["items"]["oneOf"][1]["type"] == "string"
    assert tracks["maxItems"] > 0
    # Bodies are documented as JSON only (nested tracks have no form encoding).
    for method in ("post",):
        assert set(paths["/api/playlists"][method]["requestBody"]["content"]) == {
            "application/json"
        }
    assert set(paths["/api/playlists/{playlist_id}"]["put"]["requestBody"]["content"]) == {
        "application/json"
    }
    assert "404" in paths["/api/playlists/{playlist_id}"]["get"]["responses"]
    assert "202" in paths["/api/playlists/{playlist_id}/plays"]["post"]["responses"]


def test_schema_and_docs_pages_answer(client):
    assert client.get("/schema").status_code == 200
    assert client.get("/docs").status_code == 200


def test_error_answers_match_their_documented_schema(tmp_path, alice):
    # Found by fuzzing the gateway's schema: nested track errors and parse errors did not match.
    target = tmp_path / "schema.json"
    call_command("spectacular", "--format", "openapi-json", "--file", str(target))
    component = json.loads(target.read_text())["components"]["schemas"]["ValidationError"]
    nested = alice.post(
        "/api/playlists", {"name": "ok", "tracks": [{"title": "t", "artist": True}]}
    )
    assert nested.status_code == 400
    assert isinstance(nested.json()["errors"]["tracks"], dict)
    unparsable = alice.client.post(
        "/api/playlists", b"\x00", content_type="application/json", headers=None
    )
    assert unparsable.status_code == 400
    assert unparsable.json()["code"] == "parse_error"
    for answer in (nested, unparsable):
        jsonschema.validate(answer.json(), component)
