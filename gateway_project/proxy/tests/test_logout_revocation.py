"""Logout and account deletion when the revocation cannot be stored: 503, auth never called.

The revocation is written before auth is called. If Redis cannot take it, the client gets 503
``revocation_unavailable`` with ``Retry-After`` and keeps its session (auth never saw the logout,
so the refresh token is untouched); it is never told it logged out while its access token still
works. If auth refuses (or never gets) the logout, the revocation is taken off again.
"""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import override_settings

from proxy.exceptions import REVOCATION_UNAVAILABLE, TOKEN_REVOKED
from proxy.revocation import REVOKED_KEY
from proxy.tests.conftest import free_port
from proxy.tests.fake_upstream import Answer

ROUTES = [("post", "/api/auth/logout"), ("delete", "/api/auth/me")]


def bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def end_session(client, method, path, token):
    return getattr(client, method)(
        path, data=b'{"refresh": "r"}', content_type="application/json", **bearer(token)
    )


def assert_revocation_unavailable(response):
    assert response.status_code == 503, response.content
    assert response.json() == {"detail": REVOCATION_UNAVAILABLE, "code": "revocation_unavailable"}
    assert int(response["Retry-After"]) > 0


def redis_caches(*locations: str) -> dict[str, object]:
    default = settings.CACHES["default"]
    options = {**default.get("OPTIONS", {}), "SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2}
    return {"default": {**default, "LOCATION": list(locations), "OPTIONS": options}}


@pytest.mark.parametrize("method,path", ROUTES)
def test_redis_unreachable_logout_is_503_and_auth_is_not_called(
    fake, client, make_token, method, path
):
    token = make_token()
    dead = f"redis://127.0.0.1:{free_port()}/0"
    with override_settings(CACHES=redis_caches(dead)):
        response = end_session(client, method, path, token)
    assert_revocation_unavailable(response)
    assert fake.calls() == []  # auth never saw it: the refresh token stays valid
    # Redis back: the session goes on and the logout can be retried.
    assert client.get("/api/playlists", **bearer(token)).status_code == 200


@pytest.mark.parametrize("method,path", ROUTES)
def test_redis_refusing_the_write_logout_is_503_and_auth_is_not_called(
    fake, client, make_token, method, path
):
    """The revocation list is readable but takes no write (a failover: reads from a replica, the
    primary gone; or a full ``noeviction`` Redis). django-redis writes to the first LOCATION
    (here a closed port) and reads from the others (the run's Redis)."""
    token = make_token()
    dead = f"redis://127.0.0.1:{free_port()}/0"
    with override_settings(CACHES=redis_caches(dead, settings.REDIS_URL), GATEWAY_USER_RATE=None):
        # The token check (a read) passes: before this change auth was called and answered 204.
        assert client.get("/api/playlists", **bearer(token)).status_code == 200
        calls = len(fake.calls())
        fake.script = lambda r: Answer(204) if r.path == path else None
        response = end_session(client, method, path, token)
        assert_revocation_unavailable(response)
        assert len(fake.calls()) == calls  # auth not called
        # The client keeps its session: the token still works.
        assert client.get("/api/playlists", **bearer(token)).status_code == 200
    # Redis healthy again: the retried logout revokes the token.
    response = end_session(client, method, path, token)
    assert response.status_code == 204
    response = client.get("/api/playlists", **bearer(token))
    assert response.status_code == 401
    assert response.json()["detail"] == TOKEN_REVOKED


@pytest.mark.parametrize("method,path", ROUTES)
def test_the_revocation_is_stored_before_auth_answers(fake, client, make_token, method, path):
    token = make_token()
    from django.core.cache import cache

    from proxy.jwt_check import token_claims_get

    jti = token_claims_get(token=token)["jti"]
    seen: list[bool] = []

    def script(record):
        if record.path == path:
            seen.append(cache.get(REVOKED_KEY.format(jti=jti)) is not None)
            return Answer(204)
        return None

    fake.script = script
    assert end_session(client, method, path, token).status_code == 204
    assert seen == [True]


@pytest.mark.parametrize("status", [400, 401, 500, 502])
def test_a_logout_auth_refuses_leaves_the_token_working(fake, client, make_token, status):
    token = make_token()
    fake.script = lambda r: Answer(status, [("Content-Type", "application/json")], b"{}")
    assert end_session(client, "post", "/api/auth/logout", token).status_code == status
    fake.script = None
    assert client.get("/api/playlists", **bearer(token)).status_code == 200


def test_a_logout_auth_never_gets_leaves_the_token_working(fake, client, make_token):
    token = make_token()
    dead = {"url": f"http://127.0.0.1:{free_port()}", "connect_timeout": 0.5, "read_timeout": 1}
    config = {**settings.UPSTREAMS, "auth": dead}
    with override_settings(UPSTREAMS=config):
        assert end_session(client, "post", "/api/auth/logout", token).status_code == 502
    assert client.get("/api/playlists", **bearer(token)).status_code == 200


def test_a_logout_that_times_out_stays_revoked(fake, client, make_token):
    """auth may have ended the session before the gateway gave up: fail towards revoked."""
    token = make_token()
    fake.script = lambda r: Answer(204, delay=1.5) if r.path == "/api/auth/logout" else None
    assert end_session(client, "post", "/api/auth/logout", token).status_code == 504
    fake.script = None
    assert client.get("/api/playlists", **bearer(token)).status_code == 401
