"""The merge, on the services' real (saved) schemas: one valid public document."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from drf_spectacular.validation import validate_schema
from proxy.views import is_public

from apidocs.merge import (
    BEARER_SCHEME,
    ERROR_REF,
    GATEWAY_ERRORS,
    HTTP_METHODS,
    UNAVAILABLE_NOTE,
    canonical,
    schema_merge,
)
from apidocs.selectors import gateway_schema_get, routed_to
from apidocs.tests.conftest import SERVICES, saved_schema

PUBLIC_OPERATIONS = {"auth_register", "auth_login", "auth_refresh", "auth_jwks"}
TAGS = {"auth": "auth", "playlist": "playlists", "analysis": "analysis"}


def merge(upstreams: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    return schema_merge(
        gateway=gateway_schema_get(),
        upstreams=upstreams,
        routed_to=routed_to,
        is_public=is_public,
        **kwargs,
    )


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    ]


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in refs(value)]
    return []


def resolve(schema: dict[str, Any], ref: str) -> Any:
    node: Any = schema
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


@pytest.fixture
def merged(schemas):
    return merge(schemas)


def test_merged_schema_is_valid_openapi_3(merged):
    validate_schema(merged)
    assert merged["openapi"].startswith("3.")


def test_every_service_path_is_there_under_api(merged, schemas):
    expected = {path for schema in schemas.values() for path in schema["paths"]}
    assert set(merged["paths"]) == expected
    assert all(path.startswith("/api/") for path in merged["paths"])
    assert {"/api/auth/login", "/api/playlists/{playlist_id}", "/api/analysis"} <= expected
    assert merged["x-upstreams"] == {name: {"status": "ok"} for name in SERVICES}


def test_bearer_jwt_on_protected_operations_none_on_public_ones(merged):
    assert merged["components"]["securitySchemes"] == {
        BEARER_SCHEME: {
            **merged["components"]["securitySchemes"][BEARER_SCHEME],
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
        }
    }
    public = set()
    for _path, _method, operation in operations(merged):
        if operation["security"] == []:
            public.add(operation["operationId"])
        else:
            assert operation["security"] == [{BEARER_SCHEME: []}]
    assert public == PUBLIC_OPERATIONS
    # The upstreams' signed-context scheme (common.schema) is not published.
    assert "signedusercontext" not in json.dumps(merged).lower()


def test_one_tag_per_service(merged):
    assert [tag["name"] for tag in merged["tags"]] == list(TAGS.values())
    for path, _method, operation in operations(merged):
        service = next(name for name in TAGS if routed_to(path) == name)
        assert operation["tags"] == [TAGS[service]]


def test_every_ref_resolves_and_component_names_are_unique(merged, schemas):
    for ref in refs(merged):
        assert ref.startswith("#/components/"), ref
        resolve(merged, ref)
    original = {name for s in schemas.values() for name in s["components"].get("schemas", {})}
    names = set(merged["components"]["schemas"])
    # Identical definitions are shared: Error and ValidationError (common.serializers) are
    # defined once for every service, so none is prefixed.
    assert names == original
    playlist_400 = merged["paths"]["/api/playlists"]["post"]["responses"]["400"]
    assert playlist_400["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ValidationError"
    }
    login_400 = merged["paths"]["/api/auth/login"]["post"]["responses"]["400"]
    assert login_400["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ValidationError"
    }


def test_gateway_errors_on_every_proxied_operation(merged):
    for _path, _method, operation in operations(merged):
        protected = operation["security"] != []
        responses = operation["responses"]
        for status, (_description, _code, protected_only, headers) in GATEWAY_ERRORS.items():
            if protected_only and not protected:
                continue
            answer = responses[status]
            schema = answer["content"]["application/json"]["schema"]
            assert schema == {"$ref": ERROR_REF} or {"$ref": ERROR_REF} in schema["anyOf"]
            assert set(headers) <= set(answer.get("headers", {}))
    # Public: the gateway never asks for a token there.
    assert "401" not in merged["paths"]["/api/auth/.well-known/jwks.json"]["get"]["responses"]


def test_every_body_and_answer_is_described(merged):
    for path, method, operation in operations(merged):
        where = f"{method.upper()} {path}"
        assert operation.get("summary") or operation.get("description"), where
        assert any(status.startswith("2") for status in operation["responses"]), where
        for status, answer in operation["responses"].items():
            assert "description" in answer, (where, status)
            if status not in ("204", "304"):
                media = answer.get("content", {}).get("application/json")
                assert media and media.get("schema"), (where, status)
        body = operation.get("requestBody")
        if body:
            assert body["content"]["application/json"]["schema"], where
        if any(parameter["in"] == "query" for parameter in operation.get("parameters", [])):
            assert "400" in operation["responses"], where  # bad query parameters


def test_main_operations_have_examples(merged):
    text = {
        operation["operationId"]: json.dumps(operation) for _p, _m, operation in operations(merged)
    }
    for operation_id in (
        "auth_register",
        "auth_login",
        "auth_me_retrieve",
        "playlists_list",
        "playlists_create",
        "playlists_retrieve",
        "analysis_summary",
        "analysis_genres",
    ):
        assert '"example' in text[operation_id], operation_id


def test_unavailable_upstream_is_missing_and_said_so(schemas):
    merged = merge({**schemas, "analysis": None}, errors={"analysis": "answered 503"})
    validate_schema(merged)
    assert not any(path.startswith("/api/analysis") for path in merged["paths"])
    assert any(path.startswith("/api/playlists") for path in merged["paths"])
    assert merged["x-upstreams"]["analysis"] == {"status": "unavailable", "error": "answered 503"}
    assert UNAVAILABLE_NOTE.format(names="analysis") in merged["info"]["description"]
    assert "analysis" not in [tag["name"] for tag in merged["tags"]]


def test_nothing_available_is_still_a_valid_document():
    merged = merge({name: None for name in SERVICES})
    validate_schema(merged)
    assert merged["paths"] == {}
    assert {state["status"] for state in merged["x-upstreams"].values()} == {"unavailable"}


def test_colliding_component_names_are_prefixed_and_refs_rewritten(schemas):
    playlist = copy.deepcopy(schemas["playlist"])
    # The playlist service now has a "User" of its own, different from auth's.
    playlist["components"]["schemas"]["User"] = {
        "type": "object",
        "properties": {"owner": {"type": "string"}},
    }
    playlist["components"]["schemas"]["Playlist"]["properties"]["owner"] = {
        "$ref": "#/components/schemas/User"
    }
    merged = merge({**schemas, "playlist": playlist})
    validate_schema(merged)
    components = merged["components"]["schemas"]
    assert components["User"] == schemas["auth"]["components"]["schemas"]["User"]
    assert components["PlaylistUser"] == playlist["components"]["schemas"]["User"]
    assert components["Playlist"]["properties"]["owner"] == {
        "$ref": "#/components/schemas/PlaylistUser"
    }
    me = merged["paths"]["/api/auth/me"]["get"]["responses"]["200"]
    assert me["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/User"}


def test_a_component_referring_to_a_renamed_one_is_renamed_too(schemas):
    analysis = copy.deepcopy(schemas["analysis"])
    # Same name and same text as auth's "TokenPair", but its "User" is a different one.
    analysis["components"]["schemas"]["User"] = {"type": "string"}
    analysis["components"]["schemas"]["TokenPair"] = copy.deepcopy(
        schemas["auth"]["components"]["schemas"]["TokenPair"]
    )
    analysis["paths"]["/api/analysis"]["get"]["responses"]["200"]["content"]["application/json"][
        "schema"
    ] = {"$ref": "#/components/schemas/TokenPair"}
    merged = merge({**schemas, "analysis": analysis})
    validate_schema(merged)
    components = merged["components"]["schemas"]
    assert components["AnalysisUser"] == {"type": "string"}
    assert "AnalysisTokenPair" in components
    assert "#/components/schemas/AnalysisUser" in json.dumps(components["AnalysisTokenPair"])
    summary = merged["paths"]["/api/analysis"]["get"]["responses"]["200"]
    assert summary["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/AnalysisTokenPair"
    }


def test_paths_the_gateway_does_not_route_to_that_service_are_left_out(schemas):
    auth = copy.deepcopy(schemas["auth"])
    auth["paths"]["/api/playlists/stolen"] = copy.deepcopy(auth["paths"]["/api/auth/login"])
    auth["paths"]["/internal/thing"] = copy.deepcopy(auth["paths"]["/api/auth/login"])
    merged = merge({**schemas, "auth": auth})
    assert "/api/playlists/stolen" not in merged["paths"]
    assert "/internal/thing" not in merged["paths"]


def test_colliding_operation_ids_are_prefixed(schemas):
    analysis = copy.deepcopy(schemas["analysis"])
    analysis["paths"]["/api/analysis"]["get"]["operationId"] = "auth_login"
    merged = merge({**schemas, "analysis": analysis})
    ids = [operation["operationId"] for _p, _m, operation in operations(merged)]
    assert len(ids) == len(set(ids))
    assert merged["paths"]["/api/analysis"]["get"]["operationId"] == "analysis_auth_login"


def test_an_upstream_error_answer_of_another_shape_keeps_both(schemas):
    auth = copy.deepcopy(schemas["auth"])
    login = auth["paths"]["/api/auth/login"]["post"]
    login["responses"]["429"] = {
        "description": "Too many logins.",
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
    merged = merge({**schemas, "auth": auth})
    answer = merged["paths"]["/api/auth/login"]["post"]["responses"]["429"]
    assert answer["content"]["application/json"]["schema"] == {
        "anyOf": [{"type": "object"}, {"$ref": ERROR_REF}]
    }
    assert answer["description"].startswith("Too many logins. Or from the gateway")
    assert "Retry-After" in answer["headers"]


def test_saved_fixtures_are_the_services_schemas():
    for name in SERVICES:
        schema = saved_schema(name)
        assert schema["openapi"].startswith("3.")
        assert all(routed_to(path) == name for path in schema["paths"]), name


def test_canonical_ignores_wording_but_not_properties_named_like_it():
    worded = {"type": "object", "description": "A.", "properties": {"a": {"title": "x"}}}
    assert canonical(worded) == canonical({"type": "object", "properties": {"a": {}}})
    with_property = {"type": "object", "properties": {"description": {"type": "string"}}}
    assert canonical(with_property) != canonical({"type": "object", "properties": {}})
    assert canonical({"required": ["b", "a"]}) == canonical({"required": ["a", "b"]})
