"""A bearer token whose JOSE header is deeply nested JSON: 401, never a 500."""

from __future__ import annotations

import base64

from proxy.tests.conftest import b64


def test_deeply_nested_token_header_is_401_and_reaches_no_upstream(fake, client):
    # ~6 KB of base64: fits the 8 KB request-line/header limits of real servers.
    header = b64(b"[" * 2200 + b"]" * 2200)
    token = f"{header}.{b64(b'{}')}.{b64(b'sig')}"
    assert base64.urlsafe_b64decode(header + "==").startswith(b"[[[")
    response = client.get("/api/playlists", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 401
    assert response.json()["code"] == "token_not_valid"
    assert fake.calls() == []
