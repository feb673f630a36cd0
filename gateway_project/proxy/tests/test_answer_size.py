"""Upstream answers over GATEWAY_MAX_UPSTREAM_BYTES: 502 JSON, logged, never buffered whole."""

from __future__ import annotations

import logging

import pytest
from django.test import override_settings

from proxy import upstreams
from proxy.exceptions import UPSTREAM_ANSWER_TOO_LARGE
from proxy.tests.fake_upstream import Answer

LIMIT = 64 * 1024
JSON = [("Content-Type", "application/json")]


def chunked(body: bytes, size: int = 16 * 1024) -> bytes:
    """``body`` in HTTP/1.1 chunked framing (the fake upstream sends bytes as given)."""
    parts = [
        b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size])
        for i in range(0, len(body), size)
    ]
    return b"".join(parts) + b"0\r\n\r\n"


@pytest.fixture(autouse=True)
def _small_limit():
    with override_settings(GATEWAY_MAX_UPSTREAM_BYTES=LIMIT):
        yield


def test_an_answer_at_the_limit_passes_unchanged(fake, client, auth_headers):
    body = b"x" * LIMIT
    fake.script = lambda r: Answer(200, [("Content-Type", "text/plain")], body)
    response = client.get("/api/playlists", **auth_headers)
    assert response.status_code == 200 and response.content == body


def test_an_answer_over_the_limit_is_502_json_and_logged(fake, client, auth_headers, caplog):
    fake.script = lambda r: Answer(200, JSON, b"[" + b"0," * LIMIT + b"0]")
    with caplog.at_level(logging.WARNING, logger="proxy.services"):
        response = client.get("/api/playlists?limit=200", **auth_headers)
    assert response.status_code == 502
    assert response.json() == {
        "detail": UPSTREAM_ANSWER_TOO_LARGE,
        "code": "upstream_answer_too_large",
    }
    logged = [r for r in caplog.records if getattr(r, "status", "") == "too_large"]
    assert len(logged) == 1 and "over the 65536-byte limit" in logged[0].error


def test_a_chunked_answer_is_cut_off_once_over_the_limit(fake, client, auth_headers):
    """No Content-Length to judge by (and a lying one beside Transfer-Encoding is ignored): the
    gateway counts while reading and stops one byte past the limit."""
    body = chunked(b"y" * (LIMIT * 16))
    fake.script = lambda r: Answer(200, [("Transfer-Encoding", "chunked"), *JSON], body)
    response = client.get("/api/playlists", **auth_headers)
    assert response.status_code == 502
    assert response.json()["code"] == "upstream_answer_too_large"
    # A chunked answer that fits still comes through whole.
    fake.script = lambda r: Answer(200, [("Transfer-Encoding", "chunked"), *JSON], chunked(b"[1]"))
    response = client.get("/api/playlists", **auth_headers)
    assert response.status_code == 200 and response.content == b"[1]"


def test_oversized_answers_never_open_the_breaker(fake, client, auth_headers):
    """One client's huge list is not the upstream being unhealthy."""
    fake.script = lambda r: Answer(200, JSON, b"z" * (LIMIT + 1))
    for _ in range(10):
        assert client.get("/api/playlists", **auth_headers).status_code == 502
    assert len(fake.calls()) == 10
    assert upstreams.get("playlist").breaker.current_state == "closed"
    fake.script = None
    assert client.get("/api/playlists", **auth_headers).status_code == 200
