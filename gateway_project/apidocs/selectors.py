"""Reads behind the public schema: the upstreams' own schemas (fetched, cached) and the merge.

An upstream's schema is fetched from ``<upstream>/schema?format=json`` through the proxy's
connection pool for that upstream and kept in the gateway's cache for ``APIDOCS_CACHE_SECONDS``;
a failed fetch is remembered for ``APIDOCS_FAILURE_CACHE_SECONDS`` only, so a service that
comes back shows up again within seconds. Nothing here ever raises to the view: a dead
upstream or a dead cache degrade the document, they never turn it into a 500.
"""

from __future__ import annotations

import functools
import json
import logging
from typing import Any

import urllib3
from django.conf import settings
from django.core.cache import cache
from django.urls import Resolver404, resolve
from drf_spectacular.generators import EndpointEnumerator, SchemaGenerator
from drf_spectacular.settings import spectacular_settings
from proxy import upstreams
from proxy.views import ProxyView, is_public

from apidocs.merge import UPSTREAM_DOCS, schema_merge
from common.settings import env_float

logger = logging.getLogger(__name__)

UPSTREAM_SCHEMA_PATH = "/schema"
CACHE_KEY = "apidocs:upstream-schema:{name}"
DEFAULT_CACHE_SECONDS = env_float("APIDOCS_CACHE_SECONDS", 60.0)
DEFAULT_FAILURE_CACHE_SECONDS = env_float("APIDOCS_FAILURE_CACHE_SECONDS", 5.0)
DEFAULT_FETCH_TIMEOUT = env_float("APIDOCS_FETCH_TIMEOUT", 5.0)


class UpstreamSchemaError(Exception):
    """The upstream's schema could not be fetched or is not an OpenAPI 3 document."""


def _setting(name: str, default: float) -> float:
    return float(getattr(settings, name, default))


def upstream_schema_fetch(*, name: str) -> dict[str, Any]:
    """The upstream's own OpenAPI schema, fetched now (raises ``UpstreamSchemaError``)."""
    upstream = upstreams.get(name)
    read_timeout = min(
        upstream.timeout[1], _setting("APIDOCS_FETCH_TIMEOUT", DEFAULT_FETCH_TIMEOUT)
    )
    try:
        response = upstream.pool.urlopen(
            "GET",
            f"{upstream.path_prefix}{UPSTREAM_SCHEMA_PATH}?format=json",
            headers={"Accept": "application/json"},
            timeout=urllib3.Timeout(connect=upstream.timeout[0], read=read_timeout),
            redirect=False,
        )
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise UpstreamSchemaError(f"unreachable ({type(exc).__name__})") from exc
    if response.status != 200:
        raise UpstreamSchemaError(f"answered {response.status}")
    try:
        schema = json.loads(response.data)
    except ValueError as exc:
        raise UpstreamSchemaError("answered something that is not JSON") from exc
    if not (
        isinstance(schema, dict)
        and str(schema.get("openapi", "")).startswith("3.")
        and isinstance(schema.get("paths"), dict)
    ):
        raise UpstreamSchemaError("answered something that is not an OpenAPI 3 document")
    return schema


def upstream_schema_get(*, name: str) -> tuple[dict[str, Any] | None, str | None]:
    """(schema, None) or (None, why): from the cache, else fetched and cached."""
    key = CACHE_KEY.format(name=name)
    try:
        cached = cache.get(key)
    except Exception:  # a dead cache costs a fetch, never the document
        logger.warning("api docs: cache unavailable reading %s", key, exc_info=True)
        cached = None
    if isinstance(cached, dict):
        return cached.get("schema"), cached.get("error")
    try:
        entry: dict[str, Any] = {"schema": upstream_schema_fetch(name=name), "error": None}
        ttl = _setting("APIDOCS_CACHE_SECONDS", DEFAULT_CACHE_SECONDS)
    except UpstreamSchemaError as exc:
        logger.warning("api docs: schema of upstream %s unavailable: %s", name, exc)
        entry = {"schema": None, "error": str(exc)}
        ttl = _setting("APIDOCS_FAILURE_CACHE_SECONDS", DEFAULT_FAILURE_CACHE_SECONDS)
    try:
        cache.set(key, entry, timeout=ttl)
    except Exception:
        logger.warning("api docs: cache unavailable writing %s", key, exc_info=True)
    return entry["schema"], entry["error"]


class OwnEndpoints(EndpointEnumerator):
    """The gateway's own API views: not the proxy (its routes are documented by the services)."""

    def should_include_endpoint(self, path: str, callback: Any, *args: Any, **kwargs: Any) -> bool:
        view_class = getattr(callback, "cls", None)
        if isinstance(view_class, type) and issubclass(view_class, ProxyView):
            return False
        return bool(super().should_include_endpoint(path, callback, *args, **kwargs))


class OwnSchemaGenerator(SchemaGenerator):
    endpoint_inspector_cls = OwnEndpoints


@functools.cache
def gateway_schema_get() -> dict[str, Any]:
    """The gateway's own views as OpenAPI (generated once per process: they never change)."""
    return dict(OwnSchemaGenerator().get_schema(request=None, public=True))


def routed_to(path: str) -> str | None:
    """The upstream the gateway forwards ``path`` to, if any (as its URLconf decides)."""
    try:
        match = resolve(path)
    except Resolver404:
        return None
    view_class = getattr(match.func, "view_class", None)
    if isinstance(view_class, type) and issubclass(view_class, ProxyView):
        return str(match.func.view_initkwargs.get("upstream", "")) or None
    return None


def public_schema_get() -> dict[str, Any]:
    """The gateway's public OpenAPI document: its own paths plus every reachable upstream's."""
    schemas: dict[str, dict[str, Any] | None] = {}
    errors: dict[str, str] = {}
    for doc in UPSTREAM_DOCS:
        if doc.name not in settings.UPSTREAMS:
            continue
        schema, error = upstream_schema_get(name=doc.name)
        schemas[doc.name] = schema
        if error:
            errors[doc.name] = error
    return schema_merge(
        gateway=gateway_schema_get(),
        upstreams=schemas,
        routed_to=routed_to,
        is_public=is_public,
        errors=errors,
        version=str(spectacular_settings.VERSION),
    )
