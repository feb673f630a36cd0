"""The analytics admin: read-only pages for staff, a login redirect for anyone else."""

from __future__ import annotations

import pytest

from tests.conftest import signed_client
from tests.factories import GenrePlaysFactory, UserGenrePlaysFactory, UserStatsFactory

pytestmark = pytest.mark.django_db

PAGES = [
    "/admin/",
    "/admin/analysis/userstats/",
    "/admin/analysis/usergenreplays/",
    "/admin/analysis/genreplays/",
    "/admin/analysis/processedevent/",
    "/admin/analysis/overview/",
]


@pytest.fixture
def data():
    stats = UserStatsFactory(user_id="fan-42", playlists_active=9)
    UserGenrePlaysFactory(user_id="fan-42", genre="rock")
    GenrePlaysFactory(genre="rock", plays=123)
    return stats


@pytest.fixture
def superuser_client(client, django_user_model):
    user = django_user_model.objects.create_superuser("admin", "admin@example.com", "pw-Admin-1")
    client.force_login(user)
    return client


@pytest.mark.parametrize("url", PAGES)
def test_pages_render_for_a_superuser(superuser_client, data, url):
    response = superuser_client.get(url)
    assert response.status_code == 200, url


def test_index_links_the_overview(superuser_client):
    assert b'href="/admin/analysis/overview/"' in superuser_client.get("/admin/").content


def test_overview_shows_totals_top_genres_and_users(superuser_client, data):
    content = superuser_client.get("/admin/analysis/overview/").content.decode()
    assert "fan-42" in content
    assert "rock" in content and "123" in content


def test_search_by_user_id(superuser_client, data):
    UserStatsFactory(user_id="someone-else")
    content = superuser_client.get("/admin/analysis/userstats/?q=fan-42").content.decode()
    assert "fan-42" in content and "someone-else" not in content


@pytest.mark.parametrize(
    "url",
    [
        "/admin/analysis/userstats/add/",
        "/admin/analysis/genreplays/add/",
    ],
)
def test_counters_cannot_be_added(superuser_client, url):
    assert superuser_client.get(url).status_code == 403


def test_counters_cannot_be_changed_or_deleted(superuser_client, data):
    change = superuser_client.post(f"/admin/analysis/userstats/{data.pk}/change/", {"plays": 999})
    assert change.status_code == 403
    delete = superuser_client.post(f"/admin/analysis/userstats/{data.pk}/delete/", {"post": "yes"})
    assert delete.status_code == 403
    data.refresh_from_db()
    assert data.plays == 7


@pytest.mark.parametrize("url", PAGES)
def test_anonymous_is_sent_to_login(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


@pytest.mark.parametrize("url", PAGES)
def test_non_staff_user_is_sent_to_login(client, django_user_model, url):
    client.force_login(django_user_model.objects.create_user("plain", password="pw-Plain-1"))
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_signed_api_context_does_not_open_the_admin():
    response = signed_client("1", "admin").get("/admin/analysis/overview/")
    assert response.status_code == 302


def test_login_page_renders_with_its_static_files(client):
    assert client.get("/admin/login/").status_code == 200
    assert client.get("/static/admin/css/base.css").status_code == 200
