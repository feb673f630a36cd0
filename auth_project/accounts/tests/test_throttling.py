"""Login throttled per username and per client IP, registration per IP: 429 with Retry-After."""

from __future__ import annotations

import http.client
import json
import time
from unittest.mock import ANY
from urllib.parse import urlsplit

import pytest
from django.core.cache import cache
from django.test import override_settings
from rest_framework.settings import api_settings

from accounts.exceptions import ERROR_INVALID_CREDENTIALS
from accounts.tests.conftest import LOGIN, REGISTER
from accounts.tests.factories import PASSWORD
from accounts.throttling import (
    ERROR_LOGIN_LOCKED_ACCOUNT,
    ERROR_LOGIN_LOCKED_ADDRESS,
    login_counters,
    parse_rate,
)

pytestmark = pytest.mark.django_db


def rates(**overrides: str) -> dict:
    base = {
        "login_username_ip": "100/min",
        "login_username": "100/min",
        "login_ip": "100/min",
        "register_ip": "100/min",
    }
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


def test_a_wrong_guesser_cannot_lock_the_user_out_from_another_address(api, user):
    """Attacker at A fails 50 times for U: A gets 429, U signs in from B at once."""
    with override_settings(REST_FRAMEWORK=rates(login_username_ip="5/min")):
        answers = [attempt(api, user.username, ip="198.51.100.66").status_code for _ in range(50)]
        assert answers[:5] == [401] * 5
        assert set(answers[5:]) == {429}
        assert_throttled(attempt(api, user.username, ip="198.51.100.66"))
        assert attempt(api, user.username, ip="203.0.113.20", password=PASSWORD).status_code == 200
        # Only A's five failures reached the account's counter: the 429s were never guesses.
        _, account = login_counters(username=user.username, address="198.51.100.66")
        assert cache.get(account.key) == 5


def test_a_locked_pair_is_refused_even_with_the_right_password(api, user):
    """Until the window passes the pair answers 429 whatever the password (no oracle)."""
    with override_settings(REST_FRAMEWORK=rates(login_username_ip="3/min")):
        for _ in range(3):
            assert attempt(api, user.username, ip="198.51.100.5").status_code == 401
        response = attempt(api, user.username, ip="198.51.100.5", password=PASSWORD)
        assert_throttled(response)
        assert response.json()["detail"].startswith(ERROR_LOGIN_LOCKED_ADDRESS)
        assert 0 < int(response["Retry-After"]) <= 60
        user.refresh_from_db()
        assert user.last_login is None  # nothing was signed in


def test_a_locked_pair_opens_again_when_the_window_passes(api, user):
    with override_settings(REST_FRAMEWORK=rates(login_username_ip="2/1s")):
        for _ in range(2):
            attempt(api, user.username, ip="198.51.100.6")
        assert_throttled(attempt(api, user.username, ip="198.51.100.6", password=PASSWORD))
        time.sleep(1.2)
        response = attempt(api, user.username, ip="198.51.100.6", password=PASSWORD)
        assert response.status_code == 200


def test_distributed_guessing_hits_the_looser_per_username_limit(api, user):
    """Many addresses, a few failures each: the account's own limit answers 429."""
    limits = rates(login_username_ip="3/min", login_username="10/min")
    with override_settings(REST_FRAMEWORK=limits):
        for n in range(5):
            for _ in range(2):
                response = attempt(api, user.username, ip=f"198.51.100.{10 + n}")
                assert response.status_code == 401
        response = attempt(api, user.username, ip="198.51.100.99")
        assert_throttled(response)
        assert response.json()["detail"].startswith(ERROR_LOGIN_LOCKED_ACCOUNT)
        # The right password too, from anywhere, until the window passes (documented cost).
        assert_throttled(attempt(api, user.username, ip="203.0.113.1", password=PASSWORD))
        # Another account is not affected.
        assert attempt(api, "someone-else", ip="198.51.100.99").status_code == 401


def test_successes_do_not_count(api, user):
    with override_settings(REST_FRAMEWORK=rates(login_username_ip="2/min", login_username="2/min")):
        for _ in range(5):
            assert attempt(api, user.username, password=PASSWORD).status_code == 200


def test_a_success_clears_its_own_pair_only(api, user):
    limits = rates(login_username_ip="3/min", login_username="100/min")
    with override_settings(REST_FRAMEWORK=limits):
        for _ in range(2):
            attempt(api, user.username, ip="198.51.100.7")
        attempt(api, user.username, ip="198.51.100.8")
        assert attempt(api, user.username, ip="198.51.100.7", password=PASSWORD).status_code == 200
        for _ in range(3):  # the pair starts afresh
            assert attempt(api, user.username, ip="198.51.100.7").status_code == 401
        assert_throttled(attempt(api, user.username, ip="198.51.100.7"))
        # The other address's failure and the account's count are untouched.
        pair, account = login_counters(username=user.username, address="198.51.100.8")
        assert cache.get(pair.key) == 1
        assert cache.get(account.key) == 6


def test_unknown_and_existing_usernames_are_counted_alike(api, user):
    with override_settings(REST_FRAMEWORK=rates(login_username_ip="2/min")):
        for name in (user.username, "no-such-user"):
            answers = [attempt(api, name, ip="198.51.100.9") for _ in range(3)]
            assert [a.status_code for a in answers] == [401, 401, 429]
            assert answers[0].json() == {"detail": ERROR_INVALID_CREDENTIALS, "code": ANY}


def test_bad_input_is_not_a_failure(api, user):
    with override_settings(REST_FRAMEWORK=rates(login_username_ip="1/min")):
        for _ in range(3):
            response = api.post(LOGIN, {"username": user.username, "password": 5}, format="json")
            assert response.status_code == 400
        assert attempt(api, user.username, password=PASSWORD).status_code == 200


def test_username_counters_ignore_case_and_spaces(api, user):
    with override_settings(REST_FRAMEWORK=rates(login_username_ip="2/min")):
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
    assert set(api_settings.DEFAULT_THROTTLE_RATES) >= {
        "login_username_ip",
        "login_username",
        "login_ip",
        "register_ip",
    }


def test_rates_parse():
    assert parse_rate("5/min") == (5, 60)
    assert parse_rate("20/15min") == (20, 900)
    assert parse_rate("100/h") == (100, 3600)
    with pytest.raises(ValueError):
        parse_rate("lots")


@pytest.mark.integration
def test_throttle_counts_live_in_redis(api, user):
    """Every auth process shares the counts: they are keys of the run's Redis."""
    with override_settings(REST_FRAMEWORK=rates(login_username_ip="2/min")):
        attempt(api, user.username)
        attempt(api, user.username)
        assert len(cache.keys("throttle_login_username_ip_*")) == 1  # django-redis only
        assert len(cache.keys("throttle_login_username_*")) == 2
        assert cache.ttl(login_counters(username=user.username, address="203.0.113.7")[0].key) > 0
        assert_throttled(attempt(api, user.username))


def _post_from(live_server, source: str, username: str, password: str) -> tuple[int, dict]:
    """A login over a real socket bound to ``source`` (any of 127.0.0.0/8 on Linux)."""
    url = urlsplit(live_server.url)
    connection = http.client.HTTPConnection(url.hostname, url.port, source_address=(source, 0))
    try:
        body = json.dumps({"username": username, "password": password})
        connection.request("POST", LOGIN, body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, dict(response.getheaders())
    finally:
        connection.close()


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_lock_out_over_real_sockets_from_many_loopback_addresses(live_server, user):
    """Straight to auth (NUM_PROXIES=0: the socket's address), sources bound in 127.0.0.0/8."""
    limits = {
        **rates(login_username_ip="3/min", login_username="12/min", login_ip="1000/min"),
        "NUM_PROXIES": 0,
    }
    with override_settings(REST_FRAMEWORK=limits):
        attacker = [
            _post_from(live_server, "127.0.0.2", user.username, "nope")[0] for _ in range(6)
        ]
        assert attacker == [401, 401, 401, 429, 429, 429]
        assert _post_from(live_server, "127.0.0.2", user.username, PASSWORD)[0] == 429
        assert _post_from(live_server, "127.0.0.3", user.username, PASSWORD)[0] == 200
        # Distributed: 3 failures each from 3 more addresses reach the account's 12.
        for n in range(10, 13):
            for _ in range(3):
                assert _post_from(live_server, f"127.0.0.{n}", user.username, "nope")[0] == 401
        status, headers = _post_from(live_server, "127.0.0.20", user.username, "nope")
        assert status == 429
        assert int(headers["Retry-After"]) > 0
