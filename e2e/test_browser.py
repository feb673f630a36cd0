"""The browsable API in a real headless browser, through the gateway.

Debian's ``chromium`` driven by the Python ``playwright`` package (no browser download): open
``/api/playlists``, sign in from the page, create a playlist with DRF's HTML form, see it, read
the analysis page, delete it with DRF's DELETE button, sign out, and the data is gone from the
page. A screenshot of each step goes to ``artifacts/e2e/screenshots/`` (git-ignored). Plus the
cookie rules checked with plain HTTP: HTML requests only, CSRF on unsafe methods, local ``next``.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest
import requests

from common.testing import servers_required

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "artifacts" / "e2e" / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
ACCESS_COOKIE = "gateway_access"
CSRF_COOKIE = "gateway_csrftoken"


def _require(condition: bool, message: str) -> None:
    """Missing browser tooling fails under CI and skips on a laptop."""
    if condition:
        return
    if servers_required():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture
def browser_page():
    _require(
        Path(CHROMIUM).exists(), f"{CHROMIUM} missing: apt-get install -y chromium (see .ci/run)"
    )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover
        _require(False, "the playwright package is missing: pip install -r requirements/test.txt")
    profile = tempfile.mkdtemp(prefix="e2e-chromium-")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=LAUNCH_ARGS,
            viewport={"width": 1280, "height": 900},
            timeout=30_000,
        )
        try:
            context.set_default_timeout(15_000)
            page = context.pages[0] if context.pages else context.new_page()
            yield context, page
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


def _shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def _styled(page) -> bool:
    """Bootstrap from /static/ applied: the navbar has its dark background."""
    color = page.evaluate(
        "() => getComputedStyle(document.querySelector('.navbar')).backgroundColor"
    )
    return color not in ("", "transparent", "rgba(0, 0, 0, 0)")


def test_browsable_api_login_create_delete_logout(platform, browser_page, user):
    context, page = browser_page
    gw = platform.gateway
    static_failures: list[str] = []
    page.on(
        "response",
        lambda r: (
            static_failures.append(f"{r.status} {r.url}")
            if "/static/" in r.url and r.status >= 400
            else None
        ),
    )

    # 1. Signed out: a 401 page with a way to sign in.
    first = page.goto(f"{gw}/api/playlists")
    assert first is not None and first.status == 401
    assert page.locator("#login-link").is_visible()
    assert _styled(page)
    _shot(page, "01-signed-out")

    # 2. Sign in from the page (DRF's login form), back to the list.
    page.click("#login-link")
    page.wait_for_url(re.compile(r"/api/browser/login\?next="))
    page.fill("#id_username", user["username"])
    page.fill("#id_password", user["password"])
    _shot(page, "02-login-form")
    page.click("#submit-id-submit")
    page.wait_for_url(f"{gw}/api/playlists")
    assert page.locator("#gateway-logout-button").is_visible()
    assert user["username"] in page.locator(".navbar").inner_text()
    assert _styled(page)
    _shot(page, "03-signed-in-list")

    cookies = {c["name"]: c for c in context.cookies()}
    access = cookies[ACCESS_COOKIE]
    assert access["httpOnly"] and access["sameSite"] == "Lax" and access["path"] == "/api"
    assert cookies["gateway_refresh"]["path"] == "/api/browser"
    assert cookies["gateway_refresh"]["sameSite"] == "Strict"
    assert cookies[CSRF_COOKIE]["httpOnly"]

    # 3. Create a playlist through DRF's HTML form (multipart POST with the CSRF field).
    name = f"browser-{uuid.uuid4().hex[:8]}"
    form = page.locator("form[enctype='multipart/form-data'][method='POST']")
    form.locator("input[name='name']").fill(name)
    form.locator("textarea[name='description'], input[name='description']").first.fill(
        "made in a real browser"
    )
    _shot(page, "04-create-form")
    with page.expect_navigation():
        form.locator("button[type='submit'], button.btn-primary").first.click()
    body = page.locator(".response-info").inner_text()
    assert "201 Created" in body, body
    playlist_id = re.search(r'"id": "([^"]+)"', body).group(1)
    _shot(page, "05-created")

    # 4. See it in the list.
    page.goto(f"{gw}/api/playlists")
    assert name in page.locator(".response-info").inner_text()
    _shot(page, "06-listed")

    # 5. Read the analysis page.
    analysis = page.goto(f"{gw}/api/analysis")
    assert analysis is not None and analysis.status == 200
    assert "playlists_created" in page.locator(".response-info").inner_text()
    _shot(page, "07-analysis")

    # 6. Delete it with DRF's DELETE button (AJAX with the X-CSRFToken header).
    page.goto(f"{gw}/api/playlists/{playlist_id}")
    page.click("button[data-target='#deleteModal']")
    page.locator("#deleteModal").wait_for(state="visible")
    with page.expect_response(
        lambda r: r.request.method == "DELETE" and playlist_id in r.url
    ) as deleted:
        page.locator("#deleteModal button.btn-danger").click()
    # DRF's HTML renderer answers 200 to show a page; the page shows the service's 204.
    assert deleted.value.status == 200
    assert "HTTP 204 No Content" in deleted.value.text()
    page.goto(f"{gw}/api/playlists")
    assert name not in page.locator(".response-info").inner_text()
    _shot(page, "08-deleted")

    # 7. Sign out: the page no longer shows the user's data.
    page.click("#gateway-logout-button")
    page.wait_for_url(f"{gw}/api/playlists")
    assert page.locator("#login-link").is_visible()
    content = page.content()
    assert user["username"] not in content and '"results"' not in content
    assert ACCESS_COOKIE not in {c["name"] for c in context.cookies()}
    _shot(page, "09-signed-out")
    assert not static_failures, static_failures


def _login(gw: str, user: dict) -> requests.Session:
    """A browser-like session signed in through the login form (CSRF and all)."""
    session = requests.Session()
    page = session.get(f"{gw}/api/browser/login", headers=HTML, timeout=10)
    assert page.status_code == 200
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    response = session.post(
        f"{gw}/api/browser/login",
        data={
            "csrfmiddlewaretoken": token,
            "username": user["username"],
            "password": user["password"],
            "next": "/api/playlists",
        },
        headers={**HTML, "Referer": f"{gw}/api/browser/login"},
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 302, response.text
    assert response.headers["Location"] == "/api/playlists"
    return session


def test_cookie_is_for_html_only_and_unsafe_methods_need_csrf(platform, user):
    gw = platform.gateway
    session = _login(gw, user)

    page = session.get(f"{gw}/api/playlists", headers=HTML, timeout=10)
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
    # The service rendered the page; the gateway put its own CSRF token in it.
    token = re.search(r'"csrfToken": "([^"]+)"', page.text).group(1)

    # A JSON client gets nothing from the cookie.
    as_json = session.get(f"{gw}/api/playlists", headers={"Accept": "application/json"})
    assert as_json.status_code == 401
    assert as_json.json()["code"] == "not_authenticated"

    # Unsafe method with the cookie but without the CSRF token: refused, nothing written.
    forged = session.post(
        f"{gw}/api/playlists", data={"name": "csrf-forged"}, headers=HTML, timeout=10
    )
    assert forged.status_code == 403
    assert "CSRF" in forged.json()["detail"]
    wrong = session.post(
        f"{gw}/api/playlists",
        data={"name": "csrf-wrong", "csrfmiddlewaretoken": "x" * 64},
        headers=HTML,
        timeout=10,
    )
    assert wrong.status_code == 403

    # With the token (form field as DRF's HTML form posts it): created.
    made = session.post(
        f"{gw}/api/playlists",
        data={"name": "csrf-ok", "csrfmiddlewaretoken": token},
        headers=HTML,
        timeout=10,
    )
    assert made.status_code == 201, made.text[:500]
    listed = requests.get(
        f"{gw}/api/playlists",
        headers={"Authorization": f"Bearer {user['token']}", "Accept": "application/json"},
        timeout=10,
    ).json()
    assert [p["name"] for p in listed["results"]] == ["csrf-ok"]

    # Logout needs the CSRF token too, then the access token is revoked for good.
    access = session.cookies.get(ACCESS_COOKIE, path="/api")
    assert session.post(f"{gw}/api/browser/logout", headers=HTML, timeout=10).status_code == 403
    out = session.post(
        f"{gw}/api/browser/logout",
        data={"csrfmiddlewaretoken": token, "next": "https://evil.example/"},
        headers=HTML,
        allow_redirects=False,
        timeout=10,
    )
    assert out.status_code == 302
    assert out.headers["Location"] == "/api/playlists"  # never an outside next
    revoked = requests.get(
        f"{gw}/api/playlists",
        headers={"Authorization": f"Bearer {access}", "Accept": "application/json"},
        timeout=10,
    )
    assert revoked.status_code == 401


def test_login_page_refuses_bad_credentials_and_outside_next(platform, user):
    gw = platform.gateway
    session = requests.Session()
    page = session.get(f"{gw}/api/browser/login?next=//evil.example/x", headers=HTML, timeout=10)
    assert 'name="next" value="/api/playlists"' in page.text
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    bad = session.post(
        f"{gw}/api/browser/login",
        data={"csrfmiddlewaretoken": token, "username": user["username"], "password": "nope-x"},
        headers=HTML,
        allow_redirects=False,
        timeout=10,
    )
    assert bad.status_code == 200
    assert "Invalid username or password." in bad.text
    assert ACCESS_COOKIE not in session.cookies
    # Without the CSRF token the login form is refused before auth is asked.
    no_csrf = requests.post(
        f"{gw}/api/browser/login",
        data={"username": user["username"], "password": user["password"]},
        headers=HTML,
        allow_redirects=False,
        timeout=10,
    )
    assert no_csrf.status_code == 403
