"""/api/schema, /api/docs and /api/redoc: public, cached, degraded (never 500), local assets."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from django.core.cache import cache
from django.test import override_settings
from django_redis.cache import RedisCache
from drf_spectacular.validation import validate_schema

from apidocs.merge import UNAVAILABLE_NOTE
from apidocs.selectors import CACHE_KEY
from apidocs.views import SCHEMA_URL


def test_schema_is_public_yaml_by_default_and_json_on_request(services, client):
    as_yaml = client.get("/api/schema")
    assert as_yaml.status_code == 200
    assert as_yaml["Content-Type"].startswith("application/vnd.oai.openapi")
    as_json = client.get("/api/schema", {"format": "json"})
    assert as_json.status_code == 200
    assert as_json["Content-Type"].startswith("application/vnd.oai.openapi+json")
    assert yaml.safe_load(as_yaml.content) == as_json.json()
    assert client.get("/api/schema", {"format": "yaml"}).content == as_yaml.content
    negotiated = client.get("/api/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert negotiated.json() == as_json.json()
    validate_schema(as_json.json())


def test_schema_merges_every_running_service(services, get_schema, schemas):
    schema = get_schema()
    assert schema["x-upstreams"] == {name: {"status": "ok"} for name in services}
    assert set(schema["paths"]) == {p for s in schemas.values() for p in s["paths"]}
    for upstream in services.values():
        [fetch] = upstream.fetches()
        assert fetch.path == "/schema?format=json"
        # Fetched like any upstream call of the gateway: no caller identity.
        assert "X-User" not in fetch.headers and "Authorization" not in fetch.headers


def test_upstream_schemas_are_cached_then_refetched(services, get_schema):
    get_schema()
    get_schema()
    assert all(len(upstream.fetches()) == 1 for upstream in services.values())
    # The service changes; once its cache entry is gone (TTL) the docs follow it.
    services["analysis"].schema["paths"]["/api/analysis/new"] = services["analysis"].schema[
        "paths"
    ]["/api/analysis"]
    cache.delete(CACHE_KEY.format(name="analysis"))
    assert "/api/analysis/new" in get_schema()["paths"]
    assert len(services["analysis"].fetches()) == 2
    assert len(services["auth"].fetches()) == 1


def test_upstream_down_leaves_its_paths_out_and_says_so(services, get_schema):
    port = services["playlist"].server.port
    services["playlist"].server.stop()
    schema = get_schema()
    validate_schema(schema)
    assert not any(path.startswith("/api/playlists") for path in schema["paths"])
    assert any(path.startswith("/api/auth") for path in schema["paths"])
    assert schema["x-upstreams"]["playlist"]["status"] == "unavailable"
    assert "unreachable" in schema["x-upstreams"]["playlist"]["error"]
    assert UNAVAILABLE_NOTE.format(names="playlist") in schema["info"]["description"]
    # Back again: shown as soon as the (short) failure entry expires.
    services["playlist"].server.start(port=port)
    assert get_schema()["x-upstreams"]["playlist"]["status"] == "unavailable"  # still cached
    cache.delete(CACHE_KEY.format(name="playlist"))
    assert get_schema()["x-upstreams"]["playlist"] == {"status": "ok"}


def test_failures_are_remembered_briefly_and_schemas_longer(services, get_schema, monkeypatch):
    services["auth"].status = 500
    timeouts = {}
    real_set = RedisCache.set

    def spy(self, key, value, timeout=None, **kwargs):
        timeouts[key] = timeout
        return real_set(self, key, value, timeout=timeout, **kwargs)

    monkeypatch.setattr(RedisCache, "set", spy)
    with override_settings(APIDOCS_FAILURE_CACHE_SECONDS=3, APIDOCS_CACHE_SECONDS=45):
        assert get_schema()["x-upstreams"]["auth"]["status"] == "unavailable"
    assert timeouts == {
        CACHE_KEY.format(name="auth"): 3,
        CACHE_KEY.format(name="playlist"): 45,
        CACHE_KEY.format(name="analysis"): 45,
    }


@pytest.mark.parametrize(
    "status,body,reason",
    [
        (500, b'{"detail": "boom"}', "answered 500"),
        (404, b'{"detail": "Not found."}', "answered 404"),
        (200, b"<html>not json</html>", "not JSON"),
        (200, b'{"swagger": "2.0", "paths": {}}', "not an OpenAPI 3 document"),
        (200, b"[1, 2]", "not an OpenAPI 3 document"),
    ],
)
def test_upstream_answering_nonsense_counts_as_unavailable(
    services, get_schema, status, body, reason
):
    services["analysis"].status = status
    services["analysis"].body = body
    schema = get_schema()
    assert schema["x-upstreams"]["analysis"]["status"] == "unavailable"
    assert reason in schema["x-upstreams"]["analysis"]["error"]
    assert not any(path.startswith("/api/analysis") for path in schema["paths"])
    validate_schema(schema)


def test_dead_cache_still_serves_the_schema(services, get_schema):
    dead_redis = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
        }
    }
    with override_settings(CACHES=dead_redis):
        schema = get_schema()
    assert schema["x-upstreams"] == {name: {"status": "ok"} for name in services}


def test_gateway_rejections_never_touch_the_schema_routes(services, client):
    # Not proxied: an Authorization header (even a bad one) is ignored, nothing goes upstream.
    response = client.get("/api/schema", HTTP_AUTHORIZATION="Bearer not-a-token")
    assert response.status_code == 200
    assert all(upstream.server.calls() == [] for upstream in services.values())


LOCAL_URL = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")


@pytest.mark.parametrize("page", ["/api/docs", "/api/redoc"])
def test_docs_pages_load_nothing_from_the_internet(client, page):
    response = client.get(page)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    urls = LOCAL_URL.findall(html)
    assert urls, html
    for url in urls:
        assert url.startswith("/static/"), url
        asset = client.get(url)
        assert asset.status_code == 200, url
        body = b"".join(asset.streaming_content) if asset.streaming else asset.content
        assert body, url
    # No absolute URL anywhere in the page (fonts, CDNs, the online validator...).
    assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", html), html
    assert SCHEMA_URL in html


def test_swagger_ui_is_configured_for_the_public_schema(client):
    html = client.get("/api/docs").content.decode()
    assert f'url: "{SCHEMA_URL}"' in html
    settings = json.loads(re.search(r"const swaggerSettings = (\{.*?\});", html, re.S).group(1))
    assert settings["validatorUrl"] is None
    assert settings["persistAuthorization"] is True
