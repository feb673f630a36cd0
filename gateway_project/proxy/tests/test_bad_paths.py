"""Dot segments, encoded slashes and backslashes in proxied paths: 400 ``bad_path``, no upstream
call, so a client never reaches an upstream path outside the route's prefix (such as a service's
own ``/metrics`` or ``/admin/``).

The test client decodes the path into ``PATH_INFO`` as gunicorn does; the paths as sent are also
given as ``RAW_URI`` (gunicorn's raw request target), where an encoded slash is still visible.
"""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from proxy.exceptions import BAD_PATH

ATTACKS = [
    "/api/playlists/../../metrics",
    "/api/playlists/..%2f..%2fmetrics",
    "/api/playlists/..%2F..%2Fmetrics",
    "/api/playlists/%2e%2e/%2e%2e/metrics",
    "/api/playlists/%2E%2E/%2E%2E/metrics",
    "/api/auth/%2e%2e/%2e%2e/admin/",
    "/api/auth/../../admin/",
    "/api/auth/../analysis/admin/",
    "/api/analysis/./../../metrics",
    "/api/analysis/.",
    "/api/playlists/..",
    "/api/playlists/abc%2fdef",
    "/api/playlists/..%5c..%5cmetrics",
    "/api/playlists/abc%5Cdef",
    "/api/playlists/%252e%252e/%252e%252e/metrics",  # double-encoded
    "/api/playlists/%252f",
    "/api/playlists/x/.%2e/.%2e/.%2e/metrics",
]


def rejected() -> float:
    return (
        REGISTRY.get_sample_value("gateway_rejected_requests_total", {"reason": "bad_path"}) or 0.0
    )


@pytest.mark.parametrize("path", ATTACKS)
@pytest.mark.parametrize("method", ["get", "post", "delete"])
def test_a_path_leaving_its_prefix_is_400_and_never_forwarded(
    fake, client, auth_headers, path, method
):
    before = rejected()
    response = getattr(client, method)(path, RAW_URI=path, **auth_headers)
    assert response.status_code == 400, (path, response.content)
    assert response.json() == {"detail": BAD_PATH, "code": "bad_path"}
    assert fake.requests == []  # the upstream never called (not even for the JWKS)
    assert rejected() == before + 1


@pytest.mark.parametrize("path", ["/api/auth/%2e%2e/%2e%2e/admin/", "/api/playlists/..%2fmetrics"])
def test_without_a_token_it_is_400_too(fake, client, path):
    response = client.get(path, RAW_URI=path)
    assert response.status_code == 400
    assert response.json()["code"] == "bad_path"
    assert fake.requests == []


@pytest.mark.parametrize(
    "path",
    [
        "/api/playlists",
        "/api/playlists/65f0c0ffee0123456789abcd",
        "/api/playlists/65f0c0ffee0123456789abcd/plays",
        "/api/playlists/a.b/..c/...",  # dots inside names are no dot segments
        "/api/playlists/caf%C3%A9",
        "/api/analysis/me",
    ],
)
def test_ordinary_paths_are_forwarded_unchanged(fake, client, auth_headers, path):
    response = client.get(path + "?q=..%2f", RAW_URI=path + "?q=..%2f", **auth_headers)
    assert response.status_code == 200, response.content
    assert fake.calls()[-1].path.startswith(path)
