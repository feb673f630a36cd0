"""Merging the services' own OpenAPI schemas into the gateway's public one (pure functions).

Input: the gateway's own generated schema, and each upstream's schema (or ``None`` when it could
not be fetched). Output: one OpenAPI 3 document of the API as clients see it through the gateway:
only the paths the gateway routes to that upstream, one tag per service, bearer JWT security on
every operation the gateway protects (none on its public routes), component names unique across
services (prefixed on collision, every ``$ref`` rewritten), and the gateway's own error answers
(401, 413, 429, 502, 503, 504) on every proxied operation.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

BEARER_SCHEME = "bearerAuth"
ERROR_COMPONENT = "Error"
ERROR_REF = f"#/components/schemas/{ERROR_COMPONENT}"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
TITLE = "Music streaming platform API"
UNAVAILABLE_NOTE = (
    "Unavailable while this schema was built (its operations are missing; "
    "the schema is rebuilt within seconds once it answers): {names}."
)


@dataclass(frozen=True)
class UpstreamDoc:
    """How one upstream appears in the public schema."""

    name: str  # key of settings.UPSTREAMS
    tag: str
    prefix: str  # prepended to a component name that collides with a different one
    description: str


UPSTREAM_DOCS = (
    UpstreamDoc(
        "auth",
        "auth",
        "Auth",
        "Accounts: register, log in (access + refresh JWTs), refresh, log out, profile, "
        "and the public keys (JWKS) the tokens are signed with.",
    ),
    UpstreamDoc("playlist", "playlists", "Playlist", "The signed-in user's playlists and plays."),
    UpstreamDoc(
        "analysis", "analysis", "Analysis", "Listening statistics computed from playlist events."
    ),
)

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"detail": {"type": "string"}, "code": {"type": "string"}},
    "required": ["code", "detail"],
}
BEARER_SECURITY_SCHEME: dict[str, Any] = {
    "type": "http",
    "scheme": "bearer",
    "bearerFormat": "JWT",
    "description": "The access token from POST /api/auth/login (or register, refresh), sent as "
    "`Authorization: Bearer <token>`. The gateway verifies it (RS256, JWKS, revocation) and "
    "tells the services who the caller is.",
}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer"},
    }
}
# status -> (description, example code, only on protected operations, headers)
GATEWAY_ERRORS: dict[str, tuple[str, str, bool, dict[str, Any]]] = {
    "401": (
        "Gateway: missing, malformed, expired or revoked bearer token.",
        "not_authenticated",
        True,
        {},
    ),
    "413": ("Gateway: request body larger than MAX_BODY_BYTES.", "payload_too_large", False, {}),
    "429": ("Gateway: rate limit exceeded.", "throttled", False, _RETRY_AFTER),
    "502": (
        "Gateway: the service refused or dropped the connection.",
        "upstream_unreachable",
        False,
        {},
    ),
    "503": (
        "Gateway: the service's circuit breaker is open (or, for protected operations, the "
        "token keys or revocation list are unavailable).",
        "upstream_unavailable",
        False,
        _RETRY_AFTER,
    ),
    "504": ("Gateway: the service did not answer in time.", "upstream_timeout", False, {}),
}


_PROSE = {"description", "title", "example", "examples"}


def canonical(value: Any) -> str:
    """A comparable form of a schema fragment: what it accepts, not how it is worded.

    Key order, ``required`` order, descriptions, titles and examples are ignored (but not
    properties that happen to be *named* so).
    """

    def normal(item: Any, *, names: bool = False) -> Any:
        if isinstance(item, dict):
            return {
                key: sorted(val)
                if key == "required" and isinstance(val, list)
                else normal(val, names=key == "properties" and not names)
                for key, val in item.items()
                if names or key not in _PROSE
            }
        if isinstance(item, list):
            return [normal(val) for val in item]
        return item

    return json.dumps(normal(value), sort_keys=True)


def refs_rewrite(node: Any, renames: Mapping[str, str]) -> Any:
    """A copy of ``node`` with every ``$ref`` (and discriminator mapping) found in ``renames``."""
    if isinstance(node, dict):
        result = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                result[key] = renames.get(value, value)
            elif key == "mapping" and isinstance(value, dict):
                result[key] = {
                    k: renames.get(v, v) if isinstance(v, str) else v for k, v in value.items()
                }
            else:
                result[key] = refs_rewrite(value, renames)
        return result
    if isinstance(node, list):
        return [refs_rewrite(item, renames) for item in node]
    return node


def _ref(section: str, name: str) -> str:
    return f"#/components/{section}/{name}"


def _unique(name: str, taken: Callable[[str], bool]) -> str:
    candidate, number = name, 2
    while taken(candidate):
        candidate, number = f"{name}{number}", number + 1
    return candidate


def components_merge(
    *, merged: dict[str, dict[str, Any]], incoming: Mapping[str, Any], prefix: str
) -> dict[str, str]:
    """Add ``incoming`` components to ``merged``; return the ``$ref`` renames to apply.

    A name already present with an identical definition is shared; with a different one the
    incoming component is renamed ``<prefix><Name>``. Definitions are compared after renaming
    (a component is different if a component it refers to had to be renamed), to a fixpoint.
    """
    sections = {
        section: items
        for section, items in incoming.items()
        if section != "securitySchemes" and isinstance(items, dict)
    }
    renames: dict[str, str] = {}
    while True:
        changed = False
        for section, items in sections.items():
            target = merged.get(section, {})
            for name, definition in items.items():
                ref = _ref(section, name)
                if ref in renames or name not in target:
                    continue
                if canonical(target[name]) != canonical(refs_rewrite(definition, renames)):
                    new = _unique(
                        prefix + name,
                        lambda n, s=section: n in merged.get(s, {}) or n in sections[s],
                    )
                    renames[ref] = _ref(section, new)
                    changed = True
        if not changed:
            break
    for section, items in sections.items():
        target = merged.setdefault(section, {})
        for name, definition in items.items():
            ref = _ref(section, name)
            new = renames.get(ref, ref).rsplit("/", 1)[1]
            if new not in target:
                target[new] = refs_rewrite(definition, renames)
    return renames


def _error_response(
    status: str, description: str, code: str, headers: dict[str, Any]
) -> dict[str, Any]:
    detail = description.removeprefix("Gateway: ").rstrip(".")
    answer: dict[str, Any] = {
        "description": description,
        "content": {
            "application/json": {
                "schema": {"$ref": ERROR_REF},
                "example": {"detail": detail[0].upper() + detail[1:] + ".", "code": code},
            }
        },
    }
    if headers:
        answer["headers"] = copy.deepcopy(headers)
    return answer


def gateway_errors_add(*, operation: dict[str, Any], protected: bool) -> None:
    """Describe the answers the gateway itself may give instead of the service's."""
    responses = operation.setdefault("responses", {})
    for status, (description, code, protected_only, headers) in GATEWAY_ERRORS.items():
        if protected_only and not protected:
            continue
        existing = responses.get(status)
        if existing is None:
            responses[status] = _error_response(status, description, code, headers)
            continue
        existing["description"] = " ".join(
            part
            for part in (
                existing.get("description", ""),
                "Or from the gateway: " + description.removeprefix("Gateway: "),
            )
            if part
        )
        content = existing.setdefault("content", {})
        media = content.setdefault("application/json", {})
        schema = media.get("schema")
        if schema is None:
            media["schema"] = {"$ref": ERROR_REF}
        elif schema != {"$ref": ERROR_REF}:
            media["schema"] = {"anyOf": [schema, {"$ref": ERROR_REF}]}
        if headers:
            existing.setdefault("headers", {}).update(copy.deepcopy(headers))


def _unique_operation_id(operation: dict[str, Any], prefix: str, seen: set[str]) -> None:
    operation_id = operation.get("operationId")
    if not operation_id:
        return
    if operation_id in seen:
        operation_id = _unique(f"{prefix}_{operation_id}", lambda n: n in seen)
        operation["operationId"] = operation_id
    seen.add(operation_id)


def schema_merge(
    *,
    gateway: Mapping[str, Any],
    upstreams: Mapping[str, Mapping[str, Any] | None],
    routed_to: Callable[[str], str | None],
    is_public: Callable[[str, str], bool],
    errors: Mapping[str, str] | None = None,
    version: str = "1.0.0",
) -> dict[str, Any]:
    """The public schema.

    ``gateway`` is the gateway's own generated schema (its non-proxied views), ``upstreams``
    maps each upstream name to its schema or ``None`` if unavailable (``errors`` says why),
    ``routed_to(path)`` names the upstream the gateway sends a path to, ``is_public(METHOD,
    path)`` tells the routes that need no token.
    """
    errors = errors or {}
    own = copy.deepcopy(dict(gateway))
    components: dict[str, dict[str, Any]] = {
        "schemas": {ERROR_COMPONENT: copy.deepcopy(ERROR_SCHEMA)}
    }
    own_renames = components_merge(
        merged=components, incoming=own.get("components", {}), prefix="Gateway"
    )
    # The upstreams' own scheme (common.schema, the signed user context) is not merged (see
    # components_merge): clients see the bearer token the gateway checks instead.
    security_schemes = dict(own.get("components", {}).get("securitySchemes", {}))
    security_schemes[BEARER_SCHEME] = copy.deepcopy(BEARER_SECURITY_SCHEME)
    paths: dict[str, Any] = {}
    operation_ids: set[str] = set()
    for path, item in refs_rewrite(own.get("paths", {}), own_renames).items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                operation["tags"] = ["gateway"]
                _unique_operation_id(operation, "gateway", operation_ids)
        paths[path] = item
    tags = []
    if paths:
        tags.append({"name": "gateway", "description": "Served by the gateway itself."})

    status: dict[str, dict[str, str]] = {}
    for doc in UPSTREAM_DOCS:
        schema = upstreams.get(doc.name)
        if schema is None:
            status[doc.name] = {
                "status": "unavailable",
                "error": errors.get(doc.name, "not fetched"),
            }
            continue
        status[doc.name] = {"status": "ok"}
        tags.append({"name": doc.tag, "description": doc.description})
        renames = components_merge(
            merged=components, incoming=schema.get("components", {}), prefix=doc.prefix
        )
        for path, item in refs_rewrite(schema.get("paths", {}), renames).items():
            if routed_to(path) != doc.name:
                continue  # not reachable through the gateway
            for method, operation in item.items():
                if method not in HTTP_METHODS:
                    continue
                operation["tags"] = [doc.tag]
                _unique_operation_id(operation, doc.name, operation_ids)
                protected = not is_public(method.upper(), path)
                operation["security"] = [{BEARER_SCHEME: []}] if protected else []
                gateway_errors_add(operation=operation, protected=protected)
            paths[path] = item

    down = [name for name, state in status.items() if state["status"] != "ok"]
    description = (
        "The public API of the platform, as served by the gateway: every path below is under "
        "`/api/`. Log in with `POST /api/auth/login` (or register) and send the access token as "
        "`Authorization: Bearer <token>` (Swagger UI: *Authorize*); register, login, refresh "
        'and the JWKS need no token. Every error answer is JSON `{"detail", "code"}` '
        "(validation errors add `errors: {field: [messages]}`). This document is merged at run "
        "time from the services' own schemas, so it always matches the running services."
    )
    if down:
        description += "\n\n**" + UNAVAILABLE_NOTE.format(names=", ".join(down)) + "**"
    components["securitySchemes"] = security_schemes
    return {
        "openapi": own.get("openapi", "3.0.3"),
        "info": {"title": TITLE, "version": version, "description": description},
        "paths": paths,
        "components": {
            section: dict(sorted(items.items())) for section, items in components.items()
        },
        "tags": tags,
        "x-upstreams": status,
    }
