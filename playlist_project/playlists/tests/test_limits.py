"""Limits per user and per field: a clear 4xx, and nothing written on refusal."""

from __future__ import annotations

import pytest
from bson import ObjectId
from django.conf import settings

from playlists import documents, serializers
from playlists.documents import Playlist
from playlists.exceptions import PLAYLIST_LIMIT
from playlists.outbox import utcnow
from playlists.tests.conftest import pending_envelopes


def live_count(owner_id: str) -> int:
    return Playlist._get_collection().count_documents({"owner_id": owner_id, "deleted": False})


def insert_playlists(owner_id: str, count: int) -> None:
    """``count`` small playlists straight into MongoDB (no events, no HTTP)."""
    now = utcnow()
    Playlist._get_collection().insert_many(
        [
            {
                "_id": ObjectId(),
                "owner_id": owner_id,
                "name": f"p{index}",
                "description": "",
                "tracks": [],
                "created_at": now,
                "updated_at": now,
                "deleted": False,
                "version": 0,
                "pending_events": [],
            }
            for index in range(count)
        ]
    )


def test_playlists_per_user_are_capped_with_a_409(alice, bob, settings):
    settings.PLAYLIST_MAX_PER_USER = 3
    created = [alice.post("/api/playlists", {"name": f"p{i}"}) for i in range(3)]
    assert [response.status_code for response in created] == [201] * 3
    refused = alice.post("/api/playlists", {"name": "one too many", "tracks": ["a"]})
    assert refused.status_code == 409, refused.content
    assert refused.json() == {
        "detail": PLAYLIST_LIMIT.format(max_playlists=3),
        "code": "playlist_limit_reached",
    }
    # Nothing half-written: no fourth document, no fourth event.
    assert live_count(alice.user_id) == 3
    assert len(pending_envelopes()) == 3
    assert alice.get("/api/playlists").json()["count"] == 3
    # The cap is per user...
    assert bob.post("/api/playlists", {"name": "bob's"}).status_code == 201
    # ...and counts live playlists only: deleting one makes room again.
    assert alice.delete(f"/api/playlists/{created[0].json()['id']}").status_code == 204
    assert alice.post("/api/playlists", {"name": "again"}).status_code == 201
    assert alice.post("/api/playlists", {"name": "and no more"}).status_code == 409
    assert live_count(alice.user_id) == 3


def test_updates_are_not_refused_at_the_cap(alice, settings):
    settings.PLAYLIST_MAX_PER_USER = 1
    created = alice.post("/api/playlists", {"name": "only"}).json()
    assert alice.patch(f"/api/playlists/{created['id']}", {"name": "renamed"}).status_code == 200
    assert alice.put(f"/api/playlists/{created['id']}", {"name": "put"}).status_code == 200


def test_default_cap_is_500(alice):
    assert settings.PLAYLIST_MAX_PER_USER == 500
    insert_playlists(alice.user_id, 499)
    assert alice.post("/api/playlists", {"name": "the 500th"}).status_code == 201
    refused = alice.post("/api/playlists", {"name": "the 501st"})
    assert refused.status_code == 409
    assert refused.json()["code"] == "playlist_limit_reached"
    assert live_count(alice.user_id) == 500


# The limit of every text field, in characters (a character is at most 4 bytes of UTF-8).
FIELD_LIMITS = {
    "name": 200,
    "description": 2000,
    "title": 200,
    "artist": 200,
    "album": 200,
    "genre": 200,
}


def test_field_limits_are_explicit_and_agree_between_api_and_documents():
    assert (documents.NAME_MAX, documents.DESCRIPTION_MAX) == (200, 2000)
    assert (documents.TITLE_MAX, documents.TEXT_MAX) == (200, 200)
    write = serializers.PlaylistWriteSerializer()
    assert write.fields["name"].max_length == FIELD_LIMITS["name"]
    assert write.fields["description"].max_length == FIELD_LIMITS["description"]
    track = serializers.TrackSerializer()
    for field in ("title", "artist", "album", "genre"):
        assert track.fields[field].max_length == FIELD_LIMITS[field]
    for field in ("name", "description"):
        assert Playlist._fields[field].max_length == FIELD_LIMITS[field]
    for field in ("title", "artist", "album", "genre"):
        assert documents.Track._fields[field].max_length == FIELD_LIMITS[field]


def body_with(field: str, value: str) -> dict[str, object]:
    if field in ("name", "description"):
        return {"name": "ok", field: value}
    return {"name": "ok", "tracks": [{"title": "t", field: value}]}


@pytest.mark.parametrize("field", sorted(FIELD_LIMITS))
@pytest.mark.parametrize("char", ["x", "\U0001f3b5"], ids=["ascii", "4-byte"])
def test_each_text_field_takes_its_limit_and_not_one_more(alice, field, char):
    limit = FIELD_LIMITS[field]
    accepted = alice.post("/api/playlists", body_with(field, char * limit))
    assert accepted.status_code == 201, accepted.content
    refused = alice.post("/api/playlists", body_with(field, char * (limit + 1)))
    assert refused.status_code == 400
    payload = refused.json()
    assert payload["code"] == "invalid"
    assert ("tracks" if field in ("title", "artist", "album", "genre") else field) in payload[
        "errors"
    ]
    assert live_count(alice.user_id) == 1
    assert len(pending_envelopes()) == 1


@pytest.mark.parametrize("field", sorted(FIELD_LIMITS))
def test_an_update_over_a_field_limit_changes_nothing(alice, make_playlist, field):
    created = make_playlist()
    path = f"/api/playlists/{created['id']}"
    body = body_with(field, "x" * (FIELD_LIMITS[field] + 1))
    assert alice.patch(path, body).status_code == 400
    assert alice.put(path, body).status_code == 400
    assert alice.get(path).json() == created
    assert len(pending_envelopes()) == 1


def test_tracks_over_the_limit_change_nothing_on_update(alice, make_playlist, settings):
    settings.PLAYLIST_MAX_TRACKS = 3
    created = make_playlist()
    path = f"/api/playlists/{created['id']}"
    refused = alice.patch(path, {"tracks": ["a"] * 4})
    assert refused.status_code == 400
    assert "tracks" in refused.json()["errors"]
    assert alice.get(path).json() == created
    assert len(pending_envelopes()) == 1
