"""Ending every session of a user: log out everywhere, a password change, an account deletion.

The gateway stores the user's "issued before" mark before auth is called; from then on every
access token of that user issued earlier is refused, on every device, whichever worker checks
it. Each test uses users of its own (the marks live in the shared Redis until they expire).
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
from django.core.cache import cache
from django.test import override_settings

from proxy import sessions
from proxy.exceptions import REVOCATION_UNAVAILABLE, TOKEN_REVOKED
from proxy.revocation import SESSIONS_KEY
from proxy.tests.conftest import free_port
from proxy.tests.fake_upstream import Answer
from proxy.tests.test_logout_revocation import redis_caches

LOGOUT_ALL = "/api/auth/logout-all"
ME = "/api/auth/me"


def bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


@pytest.fixture
def users():
    """Fresh user ids; their marks are deleted afterwards."""
    made: list[str] = []

    def new() -> str:
        made.append(uuid.uuid4().hex[:12])
        return made[-1]

    yield new
    cache.delete_many([SESSIONS_KEY.format(user_id=user) for user in made])


def issued(make_token, user: str, *, ms: int | None = None, **claims) -> str:
    """A token of ``user`` issued at ``ms`` (default: now), with ``iat_ms`` like auth's."""
    ms = int(time.time() * 1000) if ms is None else ms
    return make_token(user_id=user, iat=ms // 1000, iat_ms=ms, **claims)


def works(client, token: str) -> bool:
    response = client.get("/api/playlists", **bearer(token))
    if response.status_code == 401:
        assert response.json() == {"detail": TOKEN_REVOKED, "code": "token_revoked"}
        return False
    assert response.status_code == 200, response.content
    return True


@pytest.mark.parametrize("user_rate", ["600/min", None], ids=["one-round-trip", "no-throttle"])
def test_logout_all_refuses_every_earlier_token_of_the_user_only(
    fake, client, make_token, users, user_rate
):
    alice, bob = users(), users()
    with override_settings(GATEWAY_USER_RATE=user_rate):
        phone, laptop = issued(make_token, alice), issued(make_token, alice)
        legacy = make_token(user_id=alice, iat=int(time.time()) - 5)  # no iat_ms: seconds
        other = issued(make_token, bob)
        assert all(works(client, token) for token in (phone, laptop, legacy, other))
        fake.script = lambda r: Answer(204) if r.path == LOGOUT_ALL else None
        response = client.post(LOGOUT_ALL, **bearer(phone))
        assert response.status_code == 204
        assert [call.path for call in fake.calls(LOGOUT_ALL)] == [LOGOUT_ALL]
        assert not works(client, phone)
        assert not works(client, laptop)  # another device, never presented
        assert not works(client, legacy)
        assert works(client, other)
        time.sleep(0.002)
        assert works(client, issued(make_token, alice))  # signed in again afterwards


def test_a_wrong_password_on_delete_withdraws_the_mark(fake, client, make_token, users):
    alice = users()
    token, other_device = issued(make_token, alice), issued(make_token, alice)
    fake.script = lambda r: (
        Answer(400, body=b'{"current_password": ["Wrong password."]}') if r.path == ME else None
    )
    response = client.delete(
        ME, data=b'{"current_password": "x"}', content_type="application/json", **bearer(token)
    )
    assert response.status_code == 400
    assert cache.get(SESSIONS_KEY.format(user_id=alice)) is None
    assert works(client, token) and works(client, other_device)


def test_an_account_deletion_ends_every_session(fake, client, make_token, users):
    alice = users()
    token, other_device = issued(make_token, alice), issued(make_token, alice)
    fake.script = lambda r: Answer(204) if r.path == ME else None
    response = client.delete(
        ME, data=b'{"current_password": "pw"}', content_type="application/json", **bearer(token)
    )
    assert response.status_code == 204
    assert not works(client, other_device)
    assert not works(client, token)


@pytest.mark.parametrize(
    ("body", "ends"),
    [
        ({"password": "new-secret-1", "current_password": "pw"}, True),
        ({"username": "renamed", "current_password": "pw"}, False),
        ({"password": None, "current_password": "pw"}, False),
    ],
    ids=["new-password", "username-only", "null-password"],
)
def test_a_password_change_ends_every_session(fake, client, make_token, users, body, ends):
    alice = users()
    token, other_device = issued(make_token, alice), issued(make_token, alice)
    fake.script = lambda r: Answer(200, body=b"{}") if r.path == ME else None
    response = client.patch(
        ME, data=json.dumps(body).encode(), content_type="application/json", **bearer(token)
    )
    assert response.status_code == 200
    assert works(client, other_device) is not ends
    assert works(client, token) is not ends


@pytest.mark.parametrize("body", [b"[" * 10_000, b"\xff\xfe", b"not json", b'"password"'])
def test_an_odd_patch_body_ends_nothing_and_auth_judges_it(fake, client, make_token, users, body):
    alice = users()
    token = issued(make_token, alice)
    fake.script = lambda r: Answer(400, body=b'{"detail": "bad"}') if r.path == ME else None
    response = client.patch(ME, data=body, content_type="application/json", **bearer(token))
    assert response.status_code == 400
    assert cache.get(SESSIONS_KEY.format(user_id=alice)) is None
    assert works(client, token)


def test_redis_unreachable_is_503_and_auth_is_not_called(fake, client, make_token, users):
    alice = users()
    token = issued(make_token, alice)
    dead = f"redis://127.0.0.1:{free_port()}/0"
    with override_settings(CACHES=redis_caches(dead)):
        response = client.post(LOGOUT_ALL, **bearer(token))
    assert response.status_code == 503
    assert response.json() == {"detail": REVOCATION_UNAVAILABLE, "code": "revocation_unavailable"}
    assert fake.calls(LOGOUT_ALL) == []
    assert works(client, token)  # Redis back: nothing changed, the client can retry


def test_auth_timing_out_keeps_the_mark(fake, client, make_token, users):
    alice = users()
    token, other_device = issued(make_token, alice), issued(make_token, alice)

    def slow(request):
        if request.path == LOGOUT_ALL:
            time.sleep(1.5)  # the fake upstream's read timeout is 1 s
            return Answer(204)
        return None

    fake.script = slow
    assert client.post(LOGOUT_ALL, **bearer(token)).status_code == 504
    fake.script = None
    assert not works(client, other_device)  # auth may have ended the sessions: they stay ended


def test_withdrawing_an_earlier_mark_keeps_a_later_one(settings, users):
    alice = users()
    claims = {"user_id": alice, "iat": int(time.time()), "exp": int(time.time()) + 300}
    first = sessions.sessions_end(claims=claims)
    time.sleep(0.005)
    second = sessions.sessions_end(claims=claims)
    assert second.previous == first.value
    sessions.sessions_end_withdraw(first)  # the first request failed after the second one
    assert cache.get(SESSIONS_KEY.format(user_id=alice)) == second.value
    sessions.sessions_end_withdraw(second)
    assert cache.get(SESSIONS_KEY.format(user_id=alice)) == first.value


def test_the_mark_lives_as_long_as_an_access_token(users):
    alice = users()
    now = int(time.time())
    sessions.sessions_end(claims={"user_id": alice, "iat": now, "exp": now + 900})
    ttl = cache.ttl(SESSIONS_KEY.format(user_id=alice))  # type: ignore[attr-defined]
    assert 900 < ttl <= 900 + 60 + 1


@pytest.mark.parametrize(
    ("content_type", "body", "ends"),
    [
        ("application/x-www-form-urlencoded", b"password=new-secret-1&current_password=pw", True),
        ("application/x-www-form-urlencoded", b"username=renamed&current_password=pw", False),
        (
            "multipart/form-data; boundary=b",
            b'--b\r\nContent-Disposition: form-data; name="password"\r\n\r\nnew-secret-1\r\n'
            b'--b\r\nContent-Disposition: form-data; name="current_password"\r\n\r\npw\r\n'
            b"--b--\r\n",
            True,
        ),
        ("application/merge-patch+json", b'{"password": "new-secret-1"}', True),
    ],
    ids=["form-password", "form-username-only", "multipart", "json-suffix"],
)
def test_a_password_change_in_any_body_auth_accepts_ends_every_session(
    fake, client, make_token, users, content_type, body, ends
):
    """Auth also takes form and multipart bodies: a new password sent that way ends every session
    too (a body the gateway does not parse is marked; the mark goes if auth refuses it)."""
    alice = users()
    other_device = issued(make_token, alice)
    fake.script = lambda r: Answer(200, body=b"{}") if r.path == ME else None
    response = client.generic(
        "PATCH", ME, body, content_type=content_type, **bearer(issued(make_token, alice))
    )
    assert response.status_code == 200
    assert works(client, other_device) is not ends
