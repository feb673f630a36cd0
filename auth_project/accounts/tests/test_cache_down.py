"""Redis down: the login and registration limits open (logged) instead of a 500 for everyone."""

import socket

import pytest
from django.test import override_settings

from accounts.tests.conftest import LOGIN, REGISTER
from accounts.tests.factories import PASSWORD

pytestmark = pytest.mark.django_db


def unreachable_cache() -> dict:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nobody listens there
    return {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{port}/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
        }
    }


def test_sign_in_and_registration_go_on_while_redis_is_down(api, user, caplog):
    with override_settings(CACHES=unreachable_cache()):
        wrong = api.post(LOGIN, {"username": user.username, "password": "nope"}, format="json")
        assert wrong.status_code == 401
        right = api.post(LOGIN, {"username": user.username, "password": PASSWORD}, format="json")
        assert right.status_code == 200
        assert right.json()["token"]
        made = api.post(
            REGISTER,
            {"username": "while_redis_down", "password": "a long enough password 42"},
            format="json",
        )
        assert made.status_code == 201
    assert "throttle store unavailable, limit open" in caplog.text
