"""Bad input answers 400 naming the field, never reaches a query, and writes nothing."""

from __future__ import annotations

import pytest

from playlists.documents import Playlist
from playlists.tests.conftest import pending_envelopes

LONG = "x" * 201


def nothing_written() -> bool:
    return Playlist._get_collection().count_documents({}) == 0


@pytest.mark.parametrize(
    "body,field",
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": None}, "name"),
        ({"name": LONG}, "name"),
        ({"name": {"$gt": ""}}, "name"),
        ({"name": ["a"]}, "name"),
        ({"name": True}, "name"),
        ({"name": "ok", "description": "d" * 2001}, "description"),
        ({"name": "ok", "description": {"$ne": None}}, "description"),
        ({"name": "ok", "tracks": {"$where": "sleep(1000)"}}, "tracks"),
        ({"name": "ok", "tracks": "Song 1"}, "tracks"),
        ({"name": "ok", "tracks": [123]}, "tracks"),
        ({"name": "ok", "tracks": [None]}, "tracks"),
        ({"name": "ok", "tracks": [["a"]]}, "tracks"),
        ({"name": "ok", "tracks": [""]}, "tracks"),
        ({"name": "ok", "tracks": [{"title": ""}]}, "tracks"),
        ({"name": "ok", "tracks": [{"artist": "no title"}]}, "tracks"),
        ({"name": "ok", "tracks": [{"title": LONG}]}, "tracks"),
        ({"name": "ok", "tracks": [{"title": {"$gt": ""}}]}, "tracks"),
        ({"name": "ok", "tracks": [{"title": "t", "artist": LONG}]}, "tracks"),
        ({"name": "ok", "tracks": [{"title": "t", "genre": {"$ne": 1}}]}, "tracks"),
        ({"name": "ok", "tracks": [{"title": "t", "duration_ms": -1}]}, "tracks"),
        ({"name": "ok", "tracks": [{"title": "t", "duration_ms": "long"}]}, "tracks"),
        ({"name": "ok", "tracks": [{"title": "t", "duration_ms": 2**40}]}, "tracks"),
        ({"name": "ok", "tracks": [{"title": "t", "duration_ms": True}]}, "tracks"),
        # Found by schemathesis: numbers were taken as strings and strings as integers.
        ({"name": 0}, "name"),
        ({"name": "ok", "description": 1.5}, "description"),
        ({"name": "ok", "tracks": [{"title": 5}]}, "tracks"),
        ({"name": "ok", "tracks": [{"title": "t", "genre": 0}]}, "tracks"),
        ({"name": "ok", "tracks": [{"title": "t", "duration_ms": "5"}]}, "tracks"),
        ({"name": "ok", "tracks": [{"title": "t", "duration_ms": 5.0}]}, "tracks"),
    ],
)
def test_bad_create_bodies(alice, body, field):
    response = alice.post("/api/playlists", body)
    assert response.status_code == 400, response.content
    payload = response.json()
    assert payload["code"] == "invalid"
    assert field in payload["errors"]
    assert nothing_written()


def test_integer_beyond_64_bits_is_a_parse_error(alice):
    # common.parsers refuses such a number while parsing (before any field sees it).
    response = alice.post(
        "/api/playlists", {"name": "ok", "tracks": [{"title": "t", "duration_ms": 2**70}]}
    )
    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"
    assert nothing_written()


@pytest.mark.parametrize("raw", [b"[1, 2]", b'"name"', b"null", b"42"])
def test_body_that_is_not_an_object(alice, raw):
    response = alice.client.post(
        "/api/playlists", raw, content_type="application/json", headers=None
    )
    assert response.status_code == 400
    assert nothing_written()


def test_malformed_json(alice):
    response = alice.client.post(
        "/api/playlists", b'{"name": ', content_type="application/json", headers=None
    )
    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"
    assert nothing_written()


def test_unsupported_media_type(alice):
    response = alice.client.post(
        "/api/playlists", b"<name/>", content_type="application/xml", headers=None
    )
    assert response.status_code == 415
    assert nothing_written()


def test_track_limit(alice, settings):
    settings.PLAYLIST_MAX_TRACKS = 3
    assert alice.post("/api/playlists", {"name": "ok", "tracks": ["a"] * 3}).status_code == 201
    response = alice.post("/api/playlists", {"name": "ok", "tracks": ["a"] * 4})
    assert response.status_code == 400
    assert "tracks" in response.json()["errors"]
    assert Playlist._get_collection().count_documents({}) == 1


def test_default_track_limit_is_1000(alice):
    assert alice.post("/api/playlists", {"name": "ok", "tracks": ["a"] * 1000}).status_code == 201
    response = alice.post("/api/playlists", {"name": "ok", "tracks": ["a"] * 1001})
    assert response.status_code == 400
    assert "tracks" in response.json()["errors"]


def test_unknown_keys_never_reach_the_database(alice):
    response = alice.post(
        "/api/playlists",
        {
            "name": "ok",
            "owner_id": "someone-else",
            "$where": "1",
            "deleted": True,
            "pending_events": [{"x": 1}],
            "tracks": [{"title": "t", "$set": {"owner_id": "x"}, "extra": 1}],
        },
    )
    assert response.status_code == 201
    [document] = Playlist._get_collection().find({})
    assert document["owner_id"] == alice.user_id
    assert document["deleted"] is False
    assert document["tracks"] == [{"title": "t"}]
    assert [e["envelope"]["type"] for e in document["pending_events"]] == ["PlaylistCreated"]


@pytest.mark.parametrize("method", ["put", "patch"])
@pytest.mark.parametrize(
    "body,field",
    [
        ({"name": {"$gt": ""}}, "name"),
        ({"name": ""}, "name"),
        ({"tracks": {"$where": "1"}}, "tracks"),
        ({"tracks": [{"title": ""}]}, "tracks"),
        ({"description": "d" * 2001}, "description"),
    ],
)
def test_bad_update_bodies_change_nothing(alice, make_playlist, method, body, field):
    created = make_playlist()
    path = f"/api/playlists/{created['id']}"
    payload = body if method == "patch" else {"name": "ok", **body}
    response = getattr(alice, method)(path, payload)
    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert alice.get(path).json() == created
    assert len(pending_envelopes()) == 1


def test_put_needs_the_name(alice, make_playlist):
    created = make_playlist()
    response = alice.put(f"/api/playlists/{created['id']}", {"description": "no name"})
    assert response.status_code == 400
    assert "name" in response.json()["errors"]


def test_patch_with_nothing_changes_only_updated_at(alice, make_playlist):
    created = make_playlist()
    response = alice.patch(f"/api/playlists/{created['id']}", {})
    assert response.status_code == 200
    body = response.json()
    assert {k: v for k, v in body.items() if k != "updated_at"} == {
        k: v for k, v in created.items() if k != "updated_at"
    }
