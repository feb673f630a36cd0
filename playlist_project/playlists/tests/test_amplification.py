"""Memory amplification: a list page stays under its byte budget, the cache
key holds only what changes the answer, and big answers are never cached."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from bson import ObjectId
from django.conf import settings

from playlists import cache as playlist_cache
from playlists.documents import Playlist
from playlists.outbox import utcnow
from playlists.serializers import PlaylistSerializer

pytestmark = pytest.mark.integration

WIDE = 200  # the most characters a name, title, artist, album or genre may hold
BIG_TRACKS = 1000  # PLAYLIST_MAX_TRACKS


def insert_big_playlists(owner_id: str, count: int) -> list[str]:
    """``count`` playlists as big as validation allows (1,000 tracks, every field full), straight
    into MongoDB; their ids newest first. Each is ~0.8 MB of JSON."""
    now = utcnow()
    track = {
        "title": "t" * WIDE,
        "artist": "a" * WIDE,
        "album": "b" * WIDE,
        "genre": "g" * WIDE,
        "duration_ms": 1,
    }
    rows = [
        {
            "_id": ObjectId(),
            "owner_id": owner_id,
            "name": f"{index:03d}".ljust(WIDE, "n"),
            "description": "d" * 2000,
            "tracks": [dict(track) for _ in range(BIG_TRACKS)],
            "created_at": now + timedelta(seconds=index),
            "updated_at": now,
            "deleted": False,
            "version": 0,
            "pending_events": [],
        }
        for index in range(count)
    ]
    Playlist._get_collection().insert_many(rows)
    return [str(row["_id"]) for row in reversed(rows)]


def entry_keys(user_id: str) -> dict[str, int]:
    """The user's cached answers in Redis: key -> stored bytes."""
    from django.core.cache import cache

    client = cache.client.get_client()
    pattern = cache.make_key(f"playlists:e:{playlist_cache._user_key(user_id)}:*")
    return {key.decode(): client.strlen(key) for key in client.scan_iter(pattern, count=1000)}


def offset_of(link: str) -> int:
    return int(parse_qs(urlsplit(link).query).get("offset", ["0"])[0])


def test_a_page_ends_at_the_byte_budget_and_next_continues(alice, settings):
    ids = insert_big_playlists(alice.user_id, 6)
    settings.PLAYLIST_LIST_MAX_BYTES = 2 * 1024 * 1024
    seen: list[str] = []
    url: str | None = "/api/playlists?limit=200"
    pages = 0
    while url:
        response = alice.get(url)
        assert response.status_code == 200
        assert len(response.content) <= settings.PLAYLIST_LIST_MAX_BYTES + 1024
        page = response.json()
        assert page["count"] == 6
        assert 1 <= len(page["results"]) < 6  # cut short: 6 of them are ~5 MB
        # Each item is whole: full tracks, as the original's clients expect.
        assert all(len(item["tracks"]) == BIG_TRACKS for item in page["results"])
        seen += [item["id"] for item in page["results"]]
        if page["next"]:
            assert offset_of(page["next"]) == len(seen)
            assert "limit=200" in page["next"]
        url = page["next"]
        pages += 1
    assert seen == ids  # every playlist exactly once, newest first
    assert pages >= 3


def test_a_page_holds_at_least_one_playlist_whatever_the_budget(alice, settings):
    ids = insert_big_playlists(alice.user_id, 2)
    settings.PLAYLIST_LIST_MAX_BYTES = 1
    first = alice.get("/api/playlists?limit=50").json()
    assert [item["id"] for item in first["results"]] == ids[:1]
    second = alice.get(first["next"]).json()
    assert [item["id"] for item in second["results"]] == ids[1:]
    assert second["next"] is None
    assert second["previous"] is not None


def test_small_pages_are_not_cut(alice, make_playlist):
    for _ in range(3):
        make_playlist()
    page = alice.get("/api/playlists?limit=2").json()
    assert len(page["results"]) == 2 and offset_of(page["next"]) == 2
    last = alice.get(page["next"]).json()
    assert len(last["results"]) == 1 and last["next"] is None


def test_links_carry_only_limit_and_offset(alice, make_playlist):
    for _ in range(3):
        make_playlist()
    page = alice.get("/api/playlists?limit=1&offset=1&x=junk&limit2=9").json()
    for link in (page["next"], page["previous"]):
        query = parse_qs(urlsplit(link).query)
        assert set(query) <= {"limit", "offset"}, link


def test_junk_query_strings_share_one_cache_entry(alice, make_playlist, redis_cache_settings):
    make_playlist()
    answers = [alice.get(f"/api/playlists?limit=10&x={n}&junk{n}=1") for n in range(50)]
    assert {response.status_code for response in answers} == {200}
    assert len({response["ETag"] for response in answers}) == 1
    assert len({response.content for response in answers}) == 1
    assert len(entry_keys(alice.user_id)) == 1
    # What does change the answer has its own entry.
    alice.get("/api/playlists?limit=5")
    alice.get("/api/playlists?limit=10&offset=1")
    assert len(entry_keys(alice.user_id)) == 3


def test_an_answer_over_the_cache_limit_is_served_but_not_cached(
    alice, make_playlist, redis_cache_settings, settings
):
    created = make_playlist(tracks=["x" * 200] * 20)  # ~6 KB of JSON
    settings.PLAYLIST_CACHE_MAX_BYTES = 4096
    for path in ("/api/playlists", f"/api/playlists/{created['id']}"):
        first = alice.get(path)
        assert first.status_code == 200
        # Not cached, yet the ETag still works (it is computed from the answer itself).
        assert alice.get(path, headers={"If-None-Match": first["ETag"]}).status_code == 304
    assert entry_keys(alice.user_id) == {}
    settings.PLAYLIST_CACHE_MAX_BYTES = 256 * 1024
    alice.get("/api/playlists")
    assert len(entry_keys(alice.user_id)) == 1


def test_cache_limit_default_is_256_kb_and_list_budget_2_mb():
    assert settings.PLAYLIST_CACHE_MAX_BYTES == 256 * 1024
    assert settings.PLAYLIST_LIST_MAX_BYTES == 2 * 1024 * 1024
    assert settings.PLAYLIST_CACHE_USER_MAX_BYTES == 1024 * 1024


def test_distinct_pages_stop_being_cached_at_the_users_budget(
    alice, bob, make_playlist, redis_cache_settings, settings
):
    """Every (limit, offset) is a different answer; asking for many of them must not fill
    Redis: past the user's byte budget, answers are built but not stored."""
    for _ in range(3):
        make_playlist(alice, tracks=["x" * 200] * 10)
    settings.PLAYLIST_CACHE_USER_MAX_BYTES = 20_000
    for limit in range(1, 41):
        assert alice.get(f"/api/playlists?limit={limit}&offset=1").status_code == 200
    stored = entry_keys(alice.user_id)
    assert 0 < len(stored) < 40
    assert sum(stored.values()) <= 20_000 * 1.5  # pickled entries: about their JSON size
    # The budget is per user: bob still gets cached answers.
    make_playlist(bob)
    bob.get("/api/playlists")
    assert len(entry_keys(bob.user_id)) == 1


def test_the_attack_many_big_playlists_listed_with_junk_query_strings(
    alice, bob, make_playlist, redis_cache_settings, monkeypatch
):
    """20 playlists of 1,000 tracks with every field full (~16 MB), listed with ``limit=200``
    and a new junk parameter each time: each answer stays within the 2 MB budget, nothing big
    lands in Redis, and one request reads only as far as its page goes."""
    insert_big_playlists(alice.user_id, 20)
    victim = make_playlist(bob, name="bob's")
    budget = settings.PLAYLIST_LIST_MAX_BYTES
    sizes = []
    for n in range(10):
        response = alice.get(f"/api/playlists?limit=200&x={n}")
        assert response.status_code == 200
        assert response.json()["count"] == 20
        sizes.append(len(response.content))
    # One request reads only as far as its page goes (never all ~16 MB of the set): it turns
    # at most one playlist more than it answers into JSON.
    serialized = []
    to_representation = PlaylistSerializer.to_representation

    def counting(self: Any, instance: Any) -> Any:
        serialized.append(instance.id)
        return to_representation(self, instance)

    monkeypatch.setattr(PlaylistSerializer, "to_representation", counting)
    page = alice.get("/api/playlists?limit=200&x=counted").json()
    assert len(serialized) <= len(page["results"]) + 1 < 20
    monkeypatch.undo()
    assert max(sizes) <= budget + 1024
    # Also empty and one-item pages with junk: the same few keys, every one small.
    for n in range(10):
        assert alice.get(f"/api/playlists?limit=1&x={n}").status_code == 200
    for n in range(20):
        assert alice.get(f"/api/playlists?offset=500&x={n}").status_code == 200
    stored = entry_keys(alice.user_id)
    assert len(stored) <= 1, stored  # the empty page; the big pages were not cached
    assert all(size <= settings.PLAYLIST_CACHE_MAX_BYTES for size in stored.values())
    # Nothing changed for anyone: no write, and another user's list is as it was.
    assert Playlist._get_collection().count_documents({"owner_id": alice.user_id}) == 20
    listing = bob.get("/api/playlists").json()
    assert [item["id"] for item in listing["results"]] == [victim["id"]]
