"""GET /api/analysis and /api/analysis/genres: contract, validation, cache-aside, fallback."""

from __future__ import annotations

import pytest
from analysis.cache import GLOBAL_GENRES_KEY, cache_invalidate, cache_read_through, summary_key
from analysis.models import UserStats
from analysis.services import event_process
from django.conf import settings
from django.core.cache import cache
from django.test import override_settings
from prometheus_client import REGISTRY
from rest_framework.test import APIClient

from common.events import PLAYLIST_CREATED, PLAYLIST_DELETED, TRACK_PLAYED
from tests.conftest import free_port
from tests.factories import envelope

pytestmark = pytest.mark.django_db


def cache_requests(result: str) -> float:
    return REGISTRY.get_sample_value("analysis_cache_requests_total", {"result": result}) or 0.0


@pytest.fixture
def process(django_capture_on_commit_callbacks):
    """Count events as the worker does, running the after-commit cache invalidation."""

    def _process(*events):
        for event in events:
            with django_capture_on_commit_callbacks(execute=True):
                event_process(envelope=event)

    return _process


def test_requires_the_signed_user_context():
    response = APIClient().get("/api/analysis")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    forged = APIClient().get(
        "/api/analysis", HTTP_X_USER='{"id":"1","username":"x"}', HTTP_X_USER_SIGNATURE="t=1,v1=00"
    )
    assert forged.status_code == 401


def test_unknown_user_reads_zeros(api):
    response = api("nobody").get("/api/analysis")
    assert response.status_code == 200
    assert response.json() == {
        "user_id": "nobody",
        "playlists_created": 0,
        "playlists_active": 0,
        "plays": 0,
        "top_genres": [],
        "updated_at": None,
    }
    assert api("nobody").get("/api/analysis/genres").json() == []


def test_summary_shows_the_callers_counters_and_top_five_genres(api, process):
    process(
        envelope(PLAYLIST_CREATED, "u1"),
        envelope(PLAYLIST_CREATED, "u1"),
        envelope(PLAYLIST_DELETED, "u1"),
        envelope(PLAYLIST_CREATED, "u2"),
    )
    for genre, plays in (
        ("rock", 4),
        ("jazz", 3),
        ("pop", 2),
        ("folk", 2),
        ("metal", 1),
        ("blues", 1),
    ):
        process(*[envelope(TRACK_PLAYED, "u1", genre=genre) for _ in range(plays)])
    body = api("u1").get("/api/analysis").json()
    assert body["user_id"] == "u1"
    assert (body["playlists_created"], body["playlists_active"], body["plays"]) == (2, 1, 13)
    assert body["top_genres"] == [
        {"genre": "rock", "plays": 4},
        {"genre": "jazz", "plays": 3},
        {"genre": "folk", "plays": 2},
        {"genre": "pop", "plays": 2},
        {"genre": "blues", "plays": 1},
    ]
    assert body["updated_at"] is not None


def test_active_playlists_never_read_below_zero(api, process):
    process(envelope(PLAYLIST_DELETED, "u1"))
    assert UserStats.objects.get(user_id="u1").playlists_active == -1
    assert api("u1").get("/api/analysis").json()["playlists_active"] == 0


@override_settings(ANALYSIS_GENRE_MIN_USERS=1)  # ordering/caching, not the rule
def test_genres_me_and_global_most_played_first(api, process):
    process(
        *[envelope(TRACK_PLAYED, "u1", genre="rock") for _ in range(2)],
        envelope(TRACK_PLAYED, "u1", genre="jazz"),
        *[envelope(TRACK_PLAYED, "u2", genre="jazz") for _ in range(3)],
    )
    me = api("u1").get("/api/analysis/genres?scope=me").json()
    assert me == [{"genre": "rock", "plays": 2}, {"genre": "jazz", "plays": 1}]
    everyone = api("u1").get("/api/analysis/genres?scope=global").json()
    assert everyone == [{"genre": "jazz", "plays": 4}, {"genre": "rock", "plays": 2}]
    assert api("u1").get("/api/analysis/genres?scope=global&limit=1").json() == [
        {"genre": "jazz", "plays": 4}
    ]


def test_genres_limit_defaults_to_ten(api, process):
    process(*[envelope(TRACK_PLAYED, "u1", genre=f"g{i:02d}") for i in range(12)])
    assert len(api("u1").get("/api/analysis/genres").json()) == 10
    assert len(api("u1").get("/api/analysis/genres?limit=100").json()) == 12


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("scope=everyone", "scope"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("scope=me&limit=-3", "limit"),
    ],
)
def test_bad_genres_query_is_a_400_naming_the_field(api, query, field):
    response = api("u1").get(f"/api/analysis/genres?{query}")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid"
    assert list(body["errors"]) == [field]


def test_reads_are_cached_and_an_event_invalidates_them(api, process):
    process(envelope(PLAYLIST_CREATED, "u1"))
    misses, hits = cache_requests("miss"), cache_requests("hit")
    assert api("u1").get("/api/analysis").json()["playlists_created"] == 1
    generation, cached = cache.get(summary_key("u1"))
    assert cached["playlists_created"] == 1
    assert api("u1").get("/api/analysis").json()["playlists_created"] == 1
    assert (cache_requests("miss"), cache_requests("hit")) == (misses + 1, hits + 1)
    process(envelope(PLAYLIST_CREATED, "u1"))
    assert cache.get(summary_key("u1") + ":gen") == generation + 1  # the entry is stale now
    assert api("u1").get("/api/analysis").json()["playlists_created"] == 2


def test_a_value_loaded_before_a_commit_is_never_served_after_it():
    """The cache-aside race: load (old) -> commit + invalidate -> store (old). Not served."""
    key = "analysis:test:race"

    def load_then_commit_elsewhere():
        cache_invalidate(keys=[key])  # the worker commits and invalidates during our load
        return "old"

    assert cache_read_through(key=key, load=load_then_commit_elsewhere) == "old"
    assert cache_read_through(key=key, load=lambda: "new") == "new"
    assert cache_read_through(key=key, load=lambda: "unused") == "new"  # now a hit


@override_settings(ANALYSIS_GENRE_MIN_USERS=1)  # ordering/caching, not the rule
def test_a_play_invalidates_global_genres(api, process):
    process(envelope(TRACK_PLAYED, "u1", genre="rock"))
    assert api("u2").get("/api/analysis/genres?scope=global").json()[0]["plays"] == 1
    assert cache.get(GLOBAL_GENRES_KEY) is not None
    process(envelope(TRACK_PLAYED, "u2", genre="rock"))
    assert api("u2").get("/api/analysis/genres?scope=global").json()[0]["plays"] == 2


@override_settings(ANALYSIS_GENRE_MIN_USERS=1)  # ordering/caching, not the rule
def test_redis_unreachable_reads_come_from_the_database(api, process, redis_url):
    process(envelope(PLAYLIST_CREATED, "u1"), envelope(TRACK_PLAYED, "u1", genre="rock"))
    closed = f"redis://127.0.0.1:{free_port()}/0"
    dead_cache = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": closed,
            "KEY_PREFIX": "dead",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.3, "SOCKET_TIMEOUT": 0.3},
        }
    }
    before = cache_requests("fallback")
    with override_settings(CACHES=dead_cache):
        summary = api("u1").get("/api/analysis")
        genres = api("u1").get("/api/analysis/genres?scope=global")
    assert summary.status_code == 200, summary.content
    assert summary.json()["playlists_created"] == 1
    assert genres.status_code == 200
    assert genres.json() == [{"genre": "rock", "plays": 1}]
    assert cache_requests("fallback") == before + 2


def dead_cache_settings() -> dict:
    return {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
            "KEY_PREFIX": "dead",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.3, "SOCKET_TIMEOUT": 0.3},
        }
    }


def invalidation_failures() -> float:
    return REGISTRY.get_sample_value("analysis_cache_invalidation_failures_total") or 0.0


def test_redis_failing_after_the_commit_counts_the_event_once_and_raises_nothing(
    api, django_capture_on_commit_callbacks
):
    """The event is committed before the cache is touched: a Redis failure then must not reach
    the worker (which would retry, then dead-letter, an event already counted). It is logged
    and counted; the entry it left current is served at most for the cache's TTL."""
    assert api("u1").get("/api/analysis").json()["plays"] == 0  # cached with 0 plays
    event = envelope(TRACK_PLAYED, "u1", genre="rock")
    failures = invalidation_failures()
    ok = REGISTRY.get_sample_value(
        "analysis_events_processed_total", {"type": TRACK_PLAYED, "outcome": "ok"}
    )
    with (
        override_settings(CACHES=dead_cache_settings()),
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert event_process(envelope=event) == "ok"  # no exception: nothing to retry
    assert invalidation_failures() == failures + 1
    assert (
        REGISTRY.get_sample_value(
            "analysis_events_processed_total", {"type": TRACK_PLAYED, "outcome": "ok"}
        )
        == (ok or 0) + 1
    )
    assert UserStats.objects.get(user_id="u1").plays == 1
    # A redelivery is a duplicate: still one play.
    with django_capture_on_commit_callbacks(execute=True):
        assert event_process(envelope=event) == "duplicate"
    assert UserStats.objects.get(user_id="u1").plays == 1


def test_an_entry_left_current_by_a_failed_invalidation_expires_with_the_ttl(
    api, django_capture_on_commit_callbacks
):
    key = summary_key("u2")
    assert api("u2").get("/api/analysis").json()["plays"] == 0  # cached before the event
    with (
        override_settings(CACHES=dead_cache_settings()),
        django_capture_on_commit_callbacks(execute=True),
    ):
        event_process(envelope=envelope(TRACK_PLAYED, "u2", genre="rock"))
    # Redis is back; the generation bump was lost, so the old entry is still current: stale
    # (documented), but only until it expires. Every entry carries the cache's TTL.
    assert api("u2").get("/api/analysis").json()["plays"] == 0
    ttl = cache.ttl(key)
    assert ttl is not None and 0 < ttl <= settings.CACHES["default"]["TIMEOUT"]
    cache.delete(key)  # what its expiry does
    assert api("u2").get("/api/analysis").json()["plays"] == 1
    # A value stored after the failed bump is tagged with the (unchanged) generation and gets
    # the TTL too: never served forever.
    ttl = cache.ttl(key)
    assert ttl is not None and 0 < ttl <= settings.CACHES["default"]["TIMEOUT"]


def test_browsable_api_renders(api):
    response = api("u1").get("/api/analysis", HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    assert b"playlists_created" in response.content
