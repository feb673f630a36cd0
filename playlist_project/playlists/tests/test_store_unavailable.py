"""MongoDB unreachable: every route answers 503 + Retry-After (not a 500), and writes nothing.

The whole-platform version (a real outage through a cut TCP proxy, with load and exact
accounting) is e2e/faults/test_faults.py.
"""

import socket

from django.test import override_settings

from playlists import db
from playlists.documents import Playlist
from playlists.exceptions import STORE_RETRY_AFTER_SECONDS, STORE_UNAVAILABLE


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nobody listens once the socket is closed


def test_an_unreachable_store_is_503_with_retry_after_and_writes_nothing(alice, make_playlist):
    existing = make_playlist()
    before = Playlist._get_collection().count_documents({})
    unreachable = f"mongodb://127.0.0.1:{closed_port()}/?directConnection=true"
    calls = [
        ("get", "/api/playlists", None),
        ("get", f"/api/playlists/{existing['id']}", None),
        ("post", "/api/playlists", {"name": "x"}),
        ("patch", f"/api/playlists/{existing['id']}", {"name": "y"}),
        ("post", f"/api/playlists/{existing['id']}/plays", {"track": 0}),
        ("delete", f"/api/playlists/{existing['id']}", None),
    ]
    try:
        with override_settings(MONGODB_URI=unreachable, MONGODB_TIMEOUT_MS=300):
            db.disconnect()
            Playlist._collection = None
            for method, path, body in calls:
                call = getattr(alice, method)
                response = call(path) if body is None else call(path, body)
                assert response.status_code == 503, (method, path, response.content)
                assert response.json() == {"detail": STORE_UNAVAILABLE, "code": "store_unavailable"}
                assert response["Retry-After"] == str(STORE_RETRY_AFTER_SECONDS)
    finally:
        db.disconnect()
        Playlist._collection = None
        db.connect()
    assert Playlist._get_collection().count_documents({}) == before
    assert alice.get(f"/api/playlists/{existing['id']}").json()["name"] == existing["name"]
