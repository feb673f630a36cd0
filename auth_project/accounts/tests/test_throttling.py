"""Login throttled per username and per client IP, registration per IP: 429 with Retry-After."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import override_settings
from rest_framework.settings import api_settings

from accounts.tests.conftest import LOGIN, REGISTER
from accounts.tests.factories import PASSWORD

pytestmark = pytest.mark.django_db


def rates(**overrides: str) -> dict:
    base = {"login_username": "100/min", "login_ip": "100/min", "register_ip": "100/min"}
    base.update(overrides)
    return {**_rest_framework(), "DEFAULT_THROTTLE_RATES": base}


def _rest_framework() -> dict:
    from django.conf import settings

    return dict(settings.REST_FRAMEWORK)


def attempt(api, username: str, ip: str = "203.0.113.7", password: str = "wrong-guess-1"):
    # The gateway appends the address it saw; earlier entries are whatever the client sent.
    return api.post(
        LOGIN,
        {"username": username, "password": password},
        format="json",
        HTTP_X_FORWARDED_FOR=f"10.9.9.9, {ip}",
    )


def assert_throttled(response):
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert response.json()["code"] == "throttled"


def test_login_is_throttled_per_username_from_any_ip(api, user):
    with override_settings(REST_FRAMEWORK=rates(login_username="3/min")):
        for n in range(3):
            assert attempt(api, user.username, ip=f"198.51.100.{n}").status_code == 401
        assert_throttled(attempt(api, user.username, ip="198.51.100.99"))
        # The right password is throttled too: the limit protects the account.
        assert_throttled(attempt(api, user.username, password=PASSWORD))
        # Another account is not affected.
        assert attempt(api, "someone-else").status_code == 401


def test_username_throttle_ignores_case_and_spaces(api, user):
    with override_settings(REST_FRAMEWORK=rates(login_username="2/min")):
        attempt(api, user.username)
        attempt(api, f"  {user.username.upper()} ")
        assert_throttled(attempt(api, user.username))


def test_login_is_throttled_per_client_ip(api):
    with override_settings(REST_FRAMEWORK=rates(login_ip="3/min")):
        for n in range(3):
            assert attempt(api, f"user{n}", ip="192.0.2.10").status_code == 401
        assert_throttled(attempt(api, "user-new", ip="192.0.2.10"))
        assert attempt(api, "user-new", ip="192.0.2.11").status_code == 401


def test_client_chosen_forwarded_for_entries_do_not_escape_the_ip_limit(api):
    with override_settings(REST_FRAMEWORK=rates(login_ip="2/min")):
        for spoofed in ("1.1.1.1", "2.2.2.2", "3.3.3.3"):
            response = api.post(
                LOGIN,
                {"username": "u", "password": "p"},
                format="json",
                HTTP_X_FORWARDED_FOR=f"{spoofed}, 192.0.2.50",
            )
        assert_throttled(response)


@override_settings(REST_FRAMEWORK={**_rest_framework(), "NUM_PROXIES": 0})
def test_num_proxies_zero_uses_the_socket_address(api):
    assert api_settings.NUM_PROXIES == 0
    with override_settings(REST_FRAMEWORK={**rates(login_ip="1/min"), "NUM_PROXIES": 0}):
        attempt(api, "a", ip="192.0.2.1")
        assert_throttled(attempt(api, "b", ip="192.0.2.2"))  # both are 127.0.0.1


def test_register_is_throttled_per_ip(api):
    with override_settings(REST_FRAMEWORK=rates(register_ip="2/min")):
        for n in range(2):
            response = api.post(
                REGISTER,
                {"username": f"new{n}", "password": PASSWORD},
                format="json",
                HTTP_X_FORWARDED_FOR="192.0.2.77",
            )
            assert response.status_code == 201
        response = api.post(
            REGISTER,
            {"username": "new3", "password": PASSWORD},
            format="json",
            HTTP_X_FORWARDED_FOR="192.0.2.77",
        )
        assert_throttled(response)


def test_default_rates_come_from_settings():
    assert set(api_settings.DEFAULT_THROTTLE_RATES) >= {"login_username", "login_ip", "register_ip"}


@pytest.mark.integration
def test_throttle_counts_live_in_redis(api, user):
    """Every auth process shares the counts: they are keys of the run's Redis."""
    with override_settings(REST_FRAMEWORK=rates(login_username="2/min")):
        attempt(api, user.username)
        attempt(api, user.username)
        assert len(cache.keys("throttle_login_username_*")) == 1  # django-redis only
        assert_throttled(attempt(api, user.username))
