"""register -> login -> me -> logout -> the old access token is refused, all through the gateway."""

import pytest

pytestmark = pytest.mark.e2e


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_register_login_me_logout(platform, api, user):
    gw = platform.gateway
    login = api.post(
        f"{gw}/api/auth/login",
        json={"username": user["username"], "password": user["password"]},
        timeout=10,
    )
    assert login.status_code == 200, login.text
    token, refresh = login.json()["token"], login.json()["refresh"]

    me = api.get(f"{gw}/api/auth/me", headers=bearer(token), timeout=10)
    assert me.status_code == 200, me.text
    assert me.json()["username"] == user["username"]
    assert me.headers.get("X-Request-ID")

    logout = api.post(
        f"{gw}/api/auth/logout", json={"refresh": refresh}, headers=bearer(token), timeout=10
    )
    assert logout.status_code == 204, logout.text

    again = api.get(f"{gw}/api/auth/me", headers=bearer(token), timeout=10)
    assert again.status_code == 401
    assert set(again.json()) >= {"detail", "code"}
    # The blacklisted refresh token cannot mint a new access token either.
    refreshed = api.post(f"{gw}/api/auth/refresh", json={"refresh": refresh}, timeout=10)
    assert refreshed.status_code == 401


def test_wrong_password_and_unknown_user_look_the_same(platform, api, user):
    gw = platform.gateway
    wrong = api.post(
        f"{gw}/api/auth/login",
        json={"username": user["username"], "password": "nope-nope-nope"},
        timeout=10,
    )
    unknown = api.post(
        f"{gw}/api/auth/login",
        json={"username": "nobody-" + user["username"], "password": "x" * 12},
        timeout=10,
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()


def test_protected_route_without_token_is_401(platform, api):
    response = api.get(f"{platform.gateway}/api/auth/me", timeout=10)
    assert response.status_code == 401
    assert response.json()["code"]


def test_services_refuse_a_forged_user_header_when_reached_directly(platform, api, user):
    forged = {
        "X-User": '{"id":"' + user["id"] + '","username":"' + user["username"] + '"}',
        "X-User-Signature": "t=1,v1=00",
    }
    response = api.get(platform.url("auth", "/api/auth/me"), headers=forged, timeout=10)
    assert response.status_code == 401
