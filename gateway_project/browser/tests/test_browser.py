"""Browser sign-in through the gateway: cookies, HTML-only acceptance, CSRF, logout."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.http import HttpResponse
from django.test import Client, RequestFactory, override_settings
from proxy.tests.fake_upstream import Answer, Recorded

from browser import services
from browser.views import NOT_SIGNED_IN

HTML = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
JSON_CT = [("Content-Type", "application/json")]
PAGE = (
    '<html><body><ul class="nav navbar-nav pull-right"><li class="navbar-text">alice</li></ul>'
    '<form method="POST"><input type="hidden" name="csrfmiddlewaretoken" value="SERVICE">'
    '</form><script type="application/json" id="drf_csrf">{"csrfHeaderName": "X-CSRFToken", '
    '"csrfToken": "SERVICE"}</script></body></html>'
)


@pytest.fixture
def browser() -> Client:
    return Client(enforce_csrf_checks=True, HTTP_ACCEPT=HTML)


def csrf_of(response: HttpResponse) -> str:
    match = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', response.content)
    assert match, response.content[:500]
    return match.group(1).decode()


def auth_script(fake: Any, token: str, *, status: int = 200) -> None:
    def script(record: Recorded) -> Answer | None:
        if record.path == "/api/auth/login":
            if status != 200:
                return Answer(status, JSON_CT, b'{"detail": "no", "code": "no"}')
            body = {"token": token, "refresh": "refresh-1", "user": {"id": "42"}}
            return Answer(200, JSON_CT, json.dumps(body).encode())
        if record.path == "/api/auth/logout":
            return Answer(204)
        if record.path.startswith("/api/playlists"):
            headers = [("Content-Type", "text/html; charset=utf-8"), ("ETag", '"v1"')]
            return Answer(200, headers, PAGE.encode())
        return None

    fake.script = script


def sign_in(browser: Client, fake: Any, token: str, next_path: str = "/api/playlists") -> Any:
    auth_script(fake, token)
    page = browser.get(f"/api/browser/login?next={next_path}")
    return browser.post(
        "/api/browser/login",
        {
            "username": "alice",
            "password": "pw-123456",
            "next": next_path,
            "csrfmiddlewaretoken": csrf_of(page),
        },
    )


def test_login_page_is_drf_styled_and_sets_the_csrf_cookie(fake, browser):
    page = browser.get("/api/browser/login?next=/api/analysis")
    assert page.status_code == 200
    assert b"/static/rest_framework/css/bootstrap.min.css" in page.content
    assert b'name="next" value="/api/analysis"' in page.content
    cookie = page.cookies["gateway_csrftoken"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax"
    assert page["Cache-Control"].startswith("max-age=0")


def test_login_sets_http_only_cookies_and_redirects(fake, browser, make_token):
    token = make_token()
    response = sign_in(browser, fake, token, "/api/analysis?x=1")
    assert response.status_code == 302
    assert response["Location"] == "/api/analysis?x=1"
    access = response.cookies["gateway_access"]
    assert access.value == token
    assert access["httponly"] and access["samesite"] == "Lax" and access["path"] == "/api"
    assert not access["secure"]
    assert 0 < int(access["max-age"]) <= 300
    refresh = response.cookies["gateway_refresh"]
    assert refresh.value == "refresh-1"
    assert refresh["httponly"] and refresh["samesite"] == "Strict"
    assert refresh["path"] == "/api/browser"
    (call,) = fake.calls("/api/auth/login")
    assert json.loads(call.body) == {"username": "alice", "password": "pw-123456"}
    assert call.headers["Content-Type"] == "application/json"
    assert call.headers["X-Forwarded-For"] == "127.0.0.1"
    assert "Cookie" not in call.headers and "X-User" not in call.headers


@override_settings(BROWSER_COOKIE_SECURE=True, CSRF_COOKIE_SECURE=True)
def test_cookies_are_secure_when_configured(fake, make_token):
    browser = Client(enforce_csrf_checks=True, HTTP_ACCEPT=HTML)
    response = sign_in(browser, fake, make_token())
    assert response.cookies["gateway_access"]["secure"]
    assert response.cookies["gateway_refresh"]["secure"]


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil", "x"])
def test_next_must_be_a_local_path(fake, browser, make_token, target):
    response = sign_in(browser, fake, make_token(), target)
    assert response["Location"] == services.DEFAULT_NEXT


def test_login_without_csrf_token_is_refused_before_auth(fake, browser):
    auth_script(fake, "unused")
    response = browser.post("/api/browser/login", {"username": "alice", "password": "pw"})
    assert response.status_code == 403
    assert fake.calls("/api/auth/") == []


@pytest.mark.parametrize(
    ("status", "page_status", "message"),
    [
        (401, 200, services.LOGIN_FAILED),
        (400, 200, services.LOGIN_FAILED),
        (429, 429, services.LOGIN_THROTTLED),
        (500, 503, services.AUTH_UNAVAILABLE),
    ],
)
def test_refused_login_shows_the_reason_and_sets_no_session(
    fake, browser, status, page_status, message
):
    auth_script(fake, "unused", status=status)
    page = browser.get("/api/browser/login")
    response = browser.post(
        "/api/browser/login",
        {"username": "alice", "password": "wrong-pw", "csrfmiddlewaretoken": csrf_of(page)},
    )
    assert response.status_code == page_status
    assert message.encode() in response.content
    assert "gateway_access" not in response.cookies


def test_auth_unreachable_is_503(fake, browser):
    page = browser.get("/api/browser/login")
    fake.stop()
    response = browser.post(
        "/api/browser/login",
        {"username": "alice", "password": "pw-123456", "csrfmiddlewaretoken": csrf_of(page)},
    )
    assert response.status_code == 503
    assert services.AUTH_UNAVAILABLE.encode() in response.content


def test_login_refuses_a_token_auth_did_not_sign(fake, browser, make_token):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    response = sign_in(browser, fake, make_token(key=other))
    assert response.status_code == 503
    assert "gateway_access" not in response.cookies


def test_cookie_session_gets_the_page_with_the_gateways_csrf_token(fake, browser, make_token):
    sign_in(browser, fake, make_token())
    browser.cookies["other"] = "kept"
    page = browser.get("/api/playlists", HTTP_IF_NONE_MATCH='"v1"')
    assert page.status_code == 200
    assert "ETag" not in page and page["Cache-Control"] == "private, no-store"
    assert b"SERVICE" not in page.content
    token = csrf_of(page)
    assert f'"csrfToken": "{token}"'.encode() in page.content
    assert (
        b'id="gateway-logout"' in page.content and b'action="/api/browser/logout"' in page.content
    )
    (call,) = fake.calls("/api/playlists")
    assert json.loads(call.headers["X-User"]) == {"id": "42", "username": "alice"}
    assert "Cookie" not in call.headers  # no cookie, the session least of all, goes upstream
    assert "If-None-Match" not in call.headers
    assert int(page["Content-Length"]) == len(page.content)


def test_cookie_is_ignored_for_json_requests(fake, browser, make_token):
    sign_in(browser, fake, make_token())
    response = browser.get("/api/playlists", HTTP_ACCEPT="application/json")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert fake.calls("/api/playlists") == []


def test_unsafe_method_by_cookie_needs_the_csrf_token(fake, browser, make_token):
    sign_in(browser, fake, make_token())
    page = browser.get("/api/playlists")
    refused = browser.post("/api/playlists", {"name": "x"})
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"]
    refused = browser.delete("/api/playlists/1", HTTP_X_CSRFTOKEN="a" * 64)
    assert refused.status_code == 403
    assert len(fake.calls("/api/playlists")) == 1  # only the page load got through

    token = csrf_of(page)
    made = browser.post("/api/playlists", {"name": "mix", "csrfmiddlewaretoken": token})
    assert made.status_code == 200
    deleted = browser.delete("/api/playlists/1", HTTP_X_CSRFTOKEN=token)
    assert deleted.status_code == 200
    post, delete = fake.calls("/api/playlists")[1:]
    assert b'name="name"\r\n\r\nmix' in post.body  # the multipart form, forwarded as sent
    assert post.headers["Content-Type"].startswith("multipart/form-data")
    assert "X-CSRFToken" not in delete.headers


def test_bearer_wins_over_the_cookie_and_needs_no_csrf(fake, browser, make_token):
    sign_in(browser, fake, make_token())
    bearer = make_token(user_id="7", username="bob")
    response = browser.post("/api/playlists", {"name": "x"}, HTTP_AUTHORIZATION=f"Bearer {bearer}")
    assert response.status_code == 200
    (call,) = fake.calls("/api/playlists")
    assert json.loads(call.headers["X-User"])["id"] == "7"


def test_signed_out_browser_gets_an_html_401_with_a_login_link(fake, browser, make_token):
    response = browser.get("/api/playlists?limit=5")
    assert response.status_code == 401
    assert response["Content-Type"].startswith("text/html")
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert b"/api/browser/login?next=%2Fapi%2Fplaylists%3Flimit%3D5" in response.content
    assert NOT_SIGNED_IN.encode() in response.content
    browser.cookies["gateway_access"] = make_token(exp=1)
    expired = browser.get("/api/playlists")
    assert expired.status_code == 401 and b'id="login-link"' in expired.content
    assert fake.calls("/api/playlists") == []


def test_logout_revokes_both_tokens_and_clears_the_cookies(fake, browser, make_token):
    token = make_token()
    sign_in(browser, fake, token)
    page = browser.get("/api/playlists")
    assert browser.post("/api/browser/logout", {"next": "/api/playlists"}).status_code == 403
    response = browser.post(
        "/api/browser/logout", {"next": "/api/analysis", "csrfmiddlewaretoken": csrf_of(page)}
    )
    assert response.status_code == 302 and response["Location"] == "/api/analysis"
    assert response.cookies["gateway_access"].value == ""
    assert response.cookies["gateway_access"]["path"] == "/api"
    assert response.cookies["gateway_refresh"].value == ""
    (call,) = fake.calls("/api/auth/logout")
    assert json.loads(call.body) == {"refresh": "refresh-1"}
    assert json.loads(call.headers["X-User"])["id"] == "42"
    again = Client().get("/api/playlists", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert again.status_code == 401 and again.json()["code"] == "token_revoked"


def test_logout_works_when_auth_is_down(fake, browser, make_token):
    token = make_token()
    sign_in(browser, fake, token)
    page = browser.get("/api/playlists")
    fake.script = lambda record: Answer(503) if record.path.startswith("/api/auth") else None
    response = browser.post("/api/browser/logout", {"csrfmiddlewaretoken": csrf_of(page)})
    assert response.status_code == 302
    assert response.cookies["gateway_access"].value == ""
    again = Client().get("/api/playlists", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert again.status_code == 401


def test_logout_is_post_only(fake, browser):
    assert browser.get("/api/browser/logout").status_code == 405


def test_page_adapt_leaves_other_answers_alone():
    request = RequestFactory().get("/api/playlists")
    plain = HttpResponse(b'{"csrfToken": "x"}', content_type="application/json")
    assert services.page_adapt(request=request, response=plain, logout_url="/o").content == (
        b'{"csrfToken": "x"}'
    )
    encoded = HttpResponse(b"\x1f\x8b", content_type="text/html")
    encoded["Content-Encoding"] = "gzip"
    assert services.page_adapt(request=request, response=encoded, logout_url="/o").content == (
        b"\x1f\x8b"
    )


def test_forwarded_headers_strip_only_the_browser_session():
    headers = {"x-csrftoken": "c", "if-none-match": '"e"', "accept": "text/html"}
    services.forwarded_headers_strip(headers=headers, session=True)
    assert headers == {"accept": "text/html"}
    bearer = {"if-none-match": '"e"', "x-csrftoken": "t"}
    services.forwarded_headers_strip(headers=bearer, session=False)
    assert bearer == {"if-none-match": '"e"', "x-csrftoken": "t"}


def test_logout_with_redis_unreachable_is_503_and_keeps_the_session(fake, browser, make_token):
    """The revocation cannot be stored: auth is not called, the cookies stay (still signed in)."""
    from django.conf import settings
    from proxy.tests.conftest import free_port

    token = make_token()
    sign_in(browser, fake, token)
    page = browser.get("/api/playlists")
    default = settings.CACHES["default"]
    dead = {
        "default": {
            **default,
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
            "OPTIONS": {**default.get("OPTIONS", {}), "SOCKET_CONNECT_TIMEOUT": 0.2},
        }
    }
    with override_settings(CACHES=dead):
        response = browser.post("/api/browser/logout", {"csrfmiddlewaretoken": csrf_of(page)})
    assert response.status_code == 503
    assert int(response["Retry-After"]) > 0
    assert "gateway_access" not in response.cookies  # not cleared
    assert fake.calls("/api/auth/logout") == []
    again = Client().get("/api/playlists", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert again.status_code == 200
