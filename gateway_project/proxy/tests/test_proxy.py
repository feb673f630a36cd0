"""Pass-through against a real upstream: status, body, headers, user context, 502/504, 413."""

from __future__ import annotations

import gzip
import io
import json
import logging

import pytest
from django.conf import settings
from django.test import override_settings
from prometheus_client import REGISTRY

from common.context import ContextError, Signed, derive_key, verify
from proxy.exceptions import PAYLOAD_TOO_LARGE, UPSTREAM_TIMEOUT, UPSTREAM_UNREACHABLE
from proxy.tests.conftest import free_port
from proxy.tests.fake_upstream import Answer, Recorded


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_status_body_and_end_to_end_headers_pass_through(fake, client, auth_headers):
    body = json.dumps({"id": "p1", "name": "Mix"}).encode()
    fake.script = lambda r: Answer(
        201,
        [
            ("Content-Type", "application/vnd.test+json; charset=utf-8"),
            ("Location", "/api/playlists/p1"),
            ("X-Upstream", "yes"),
            ("Cache-Control", "no-store"),
        ],
        body,
    )
    response = client.post(
        "/api/playlists", data=b'{"name": "Mix"}', content_type="application/json", **auth_headers
    )
    assert response.status_code == 201
    assert response.content == body
    assert response["Content-Type"] == "application/vnd.test+json; charset=utf-8"
    assert response["Location"] == "/api/playlists/p1"
    assert response["X-Upstream"] == "yes"
    assert response["Cache-Control"] == "no-store"
    assert "Allow" not in response
    [call] = fake.calls()
    assert (call.method, call.path, call.body) == ("POST", "/api/playlists", b'{"name": "Mix"}')
    assert call.headers["Content-Type"] == "application/json"


def test_upstream_connections_are_pooled_and_kept_alive(fake, client, auth_headers):
    for _ in range(5):
        assert client.get("/api/playlists", **auth_headers).status_code == 200
    assert len({call.client_port for call in fake.calls()}) == 1


def test_path_and_query_string_forwarded_unchanged(fake, client, auth_headers):
    response = client.get("/api/analysis/genres?scope=global&limit=3&x=a%20b", **auth_headers)
    assert response.status_code == 200
    assert fake.calls()[0].path == "/api/analysis/genres?scope=global&limit=3&x=a%20b"


def test_redirects_are_passed_not_followed(fake, client, auth_headers):
    fake.script = lambda r: Answer(302, [("Location", "http://elsewhere.test/x")], b"")
    response = client.get("/api/playlists/p1", **auth_headers)
    assert response.status_code == 302
    assert response["Location"] == "http://elsewhere.test/x"
    assert len(fake.calls()) == 1


@pytest.mark.parametrize("status", [400, 404, 409, 422])
def test_4xx_answers_pass_through_unchanged(fake, client, auth_headers, status):
    body = json.dumps({"detail": "nope", "code": "custom", "errors": {"name": ["bad"]}}).encode()
    fake.script = lambda r: Answer(status, [("Content-Type", "application/problem+json")], body)
    response = client.get("/api/playlists/zzz", **auth_headers)
    assert response.status_code == status
    assert response.content == body
    assert response["Content-Type"] == "application/problem+json"


def test_5xx_answer_passes_through(fake, client, auth_headers):
    fake.script = lambda r: Answer(500, [("Content-Type", "text/plain")], b"boom")
    response = client.get("/api/playlists", **auth_headers)
    assert (response.status_code, response.content, response["Content-Type"]) == (
        500,
        b"boom",
        "text/plain",
    )


def test_hop_by_hop_response_headers_stripped(fake, client, auth_headers):
    fake.script = lambda r: Answer(
        200,
        [
            ("Content-Type", "text/plain"),
            ("Connection", "keep-alive, X-Hop"),
            ("X-Hop", "1"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Authenticate", "Basic"),
            ("Upgrade", "h2c"),
            ("X-End", "2"),
        ],
        b"ok",
    )
    response = client.get("/api/playlists", **auth_headers)
    assert response.status_code == 200
    for name in ("Connection", "X-Hop", "Keep-Alive", "Proxy-Authenticate", "Upgrade"):
        assert name not in response, name
    assert response["X-End"] == "2"


def test_encoded_body_passes_through_byte_for_byte(fake, client, auth_headers):
    payload = gzip.compress(b'{"big": "' + b"x" * 1000 + b'"}')
    fake.script = lambda r: Answer(
        200, [("Content-Type", "application/json"), ("Content-Encoding", "gzip")], payload
    )
    response = client.get("/api/playlists", HTTP_ACCEPT_ENCODING="gzip", **auth_headers)
    assert response.content == payload
    assert response["Content-Encoding"] == "gzip"
    assert fake.calls()[0].headers["Accept-Encoding"] == "gzip"


def test_cookies_pass_through(fake, client, auth_headers):
    fake.script = lambda r: Answer(
        200, [("Set-Cookie", "a=1; Path=/"), ("Set-Cookie", "b=2; HttpOnly")], b""
    )
    response = client.get("/api/playlists", **auth_headers)
    assert response.cookies["a"].value == "1"
    assert response.cookies["b"]["httponly"]


def test_upstream_cookies_never_leak_to_another_caller(fake, client, make_token):
    fake.script = lambda r: Answer(200, [("Set-Cookie", "session=alice-secret; Path=/")], b"")
    alice = client.get("/api/playlists", HTTP_AUTHORIZATION=f"Bearer {make_token()}")
    assert alice.cookies["session"].value == "alice-secret"
    fake.script = None
    bob_token = make_token(user_id="7", username="bob")
    from django.test import Client

    Client().get("/api/playlists", HTTP_AUTHORIZATION=f"Bearer {bob_token}")
    assert "Cookie" not in fake.calls()[-1].headers


def _context_of(call, *, service="playlist", key=None):
    """The user a recorded upstream call carries, checked as that service checks it."""
    user, _ = verify(
        call.headers["X-User"],
        call.headers["X-User-Signature"],
        key=key or derive_key(settings.INTERNAL_SECRET, service),
        target=Signed(audience=service, method=call.method, path=call.path, body=call.body),
    )
    return user


def test_client_user_context_is_replaced_by_a_valid_signature(fake, client, auth_headers):
    response = client.get(
        "/api/playlists",
        HTTP_X_USER='{"id":"1","username":"admin"}',
        HTTP_X_USER_SIGNATURE="t=1,n=1,v2=" + "0" * 64,
        **auth_headers,
    )
    assert response.status_code == 200
    assert _context_of(fake.calls()[0]) == {"id": "42", "username": "alice"}


def test_context_is_signed_for_this_request_and_service_only(fake, client, auth_headers):
    client.post(
        "/api/playlists/abc/play?x=1", {"track": 1}, content_type="application/json", **auth_headers
    )
    call = fake.calls()[0]
    assert call.path == "/api/playlists/abc/play?x=1"
    assert _context_of(call)["id"] == "42"  # method, path with query and body as sent
    with pytest.raises(ContextError):
        _context_of(call, service="analysis")  # another service's key and audience
    with pytest.raises(ContextError):
        _context_of(Recorded(call.method, "/api/playlists/other/play?x=1", call.headers, call.body))


def test_a_service_given_its_own_key_gets_contexts_signed_with_it(fake, client, auth_headers):
    upstreams = {name: {**config} for name, config in settings.UPSTREAMS.items()}
    upstreams["playlist"]["context_key"] = "playlist-only-key"
    with override_settings(UPSTREAMS=upstreams):
        client.get("/api/playlists", **auth_headers)
    call = fake.calls()[0]
    assert _context_of(call, key="playlist-only-key")["id"] == "42"
    with pytest.raises(ContextError):
        _context_of(call)


def test_client_credentials_never_reach_a_service(fake, client, auth_headers):
    client.get("/api/playlists", HTTP_COOKIE="sessionid=abc; theme=dark", **auth_headers)
    headers = {k.lower() for k in fake.calls()[0].headers}
    assert "authorization" not in headers
    assert "cookie" not in headers
    assert "x-user" in headers


def test_public_route_never_carries_client_user_context(fake, client):
    response = client.post(
        "/api/auth/login",
        data=b"{}",
        content_type="application/json",
        HTTP_X_USER='{"id":"1","username":"admin"}',
        HTTP_X_USER_SIGNATURE="t=1,n=1,v2=00",
    )
    assert response.status_code == 200
    headers = {k.lower() for k in fake.calls()[0].headers}
    assert "x-user" not in headers and "x-user-signature" not in headers


def test_request_hop_by_hop_headers_dropped_and_forwarding_headers_set(fake, client, auth_headers):
    client.get(
        "/api/playlists",
        HTTP_CONNECTION="X-Secret-Hop",
        HTTP_X_SECRET_HOP="1",
        HTTP_TE="trailers",
        HTTP_X_FORWARDED_FOR="10.0.0.1",
        HTTP_X_CUSTOM="kept",
        REMOTE_ADDR="192.0.2.7",
        **auth_headers,
    )
    headers = {k.lower(): v for k, v in fake.calls()[0].headers.items()}
    assert "x-secret-hop" not in headers and "te" not in headers
    assert headers["x-custom"] == "kept"
    # The client's own X-Forwarded-For is not passed on: only the address the gateway resolved.
    assert headers["x-forwarded-for"] == "192.0.2.7"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-host"] == "testserver"


def test_request_id_echoed_and_forwarded(fake, client, auth_headers):
    response = client.get("/api/playlists", HTTP_X_REQUEST_ID="trace-abc.123", **auth_headers)
    assert response["X-Request-ID"] == "trace-abc.123"
    assert fake.calls()[0].headers["X-Request-ID"] == "trace-abc.123"


def test_request_id_generated_when_missing(fake, client, auth_headers):
    response = client.get("/api/playlists", **auth_headers)
    generated = response["X-Request-ID"]
    assert generated and fake.calls()[0].headers["X-Request-ID"] == generated


def test_upstream_down_gives_502(fake, client, auth_headers):
    dead = {"url": f"http://127.0.0.1:{free_port()}", "connect_timeout": 0.5, "read_timeout": 1}
    with override_settings(UPSTREAMS={**settings.UPSTREAMS, "playlist": dead}):
        before = sample(
            "gateway_upstream_requests_total", upstream="playlist", status="connection_error"
        )
        response = client.get("/api/playlists", **auth_headers)
        assert response.status_code == 502
        assert response.json() == {"detail": UPSTREAM_UNREACHABLE, "code": "upstream_unreachable"}
        assert (
            sample(
                "gateway_upstream_requests_total", upstream="playlist", status="connection_error"
            )
            == before + 1
        )


def test_stopped_upstream_gives_502_even_with_kept_alive_connections(fake, client, auth_headers):
    assert client.get("/api/playlists", **auth_headers).status_code == 200
    fake.stop()
    response = client.get("/api/playlists", **auth_headers)
    assert response.status_code == 502


def test_upstream_timeout_gives_504(fake, client, auth_headers):
    fake.script = lambda r: Answer(200, [], b"late", delay=1.5)
    response = client.get("/api/playlists", **auth_headers)
    assert response.status_code == 504
    assert response.json() == {"detail": UPSTREAM_TIMEOUT, "code": "upstream_timeout"}


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1024)
def test_body_over_limit_by_content_length_gives_413_without_upstream(fake, client, auth_headers):
    before = sample("gateway_rejected_requests_total", reason="payload_too_large")
    response = client.post(
        "/api/playlists", data=b"x" * 1025, content_type="text/plain", **auth_headers
    )
    assert response.status_code == 413
    assert response.json() == {"detail": PAYLOAD_TOO_LARGE, "code": "payload_too_large"}
    assert fake.calls() == []
    assert sample("gateway_rejected_requests_total", reason="payload_too_large") == before + 1


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1024)
def test_body_at_limit_is_forwarded(fake, client, auth_headers):
    response = client.post(
        "/api/playlists", data=b"x" * 1024, content_type="text/plain", **auth_headers
    )
    assert response.status_code == 200
    assert fake.calls()[0].body == b"x" * 1024


class CountingStream(io.BytesIO):
    """A request body stream that remembers how much was read from it."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.consumed = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.consumed += len(chunk)
        return chunk


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1024)
def test_streamed_body_over_limit_gives_413_reading_no_more_than_the_limit(
    fake, client, auth_headers
):
    stream = CountingStream(b"y" * 100_000)
    before = sample("gateway_rejected_requests_total", reason="payload_too_large")
    response = client.generic(
        "POST",
        "/api/playlists",
        b"",
        content_type="text/plain",
        CONTENT_LENGTH="",
        HTTP_TRANSFER_ENCODING="chunked",
        **{"wsgi.input": stream},
        **auth_headers,
    )
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    assert stream.consumed == 1025
    assert fake.calls() == []
    assert sample("gateway_rejected_requests_total", reason="payload_too_large") == before + 1


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1024)
def test_streamed_body_under_limit_is_forwarded(fake, client, auth_headers):
    response = client.generic(
        "POST",
        "/api/playlists",
        b"",
        content_type="text/plain",
        CONTENT_LENGTH="",
        HTTP_TRANSFER_ENCODING="chunked",
        **{"wsgi.input": io.BytesIO(b"z" * 700)},
        **auth_headers,
    )
    assert response.status_code == 200
    assert fake.calls()[0].body == b"z" * 700


def test_each_proxied_request_logged_without_secrets(fake, client, make_token, caplog):
    token = make_token()
    with caplog.at_level(logging.INFO):
        client.get("/api/playlists?secret=1", HTTP_AUTHORIZATION=f"Bearer {token}")
    records = [r for r in caplog.records if r.name == "proxy.services"]
    assert len(records) == 1
    record = records[0]
    assert (record.method, record.path, record.upstream, record.status) == (
        "GET",
        "/api/playlists",
        "playlist",
        "200",
    )
    assert record.duration_ms >= 0
    assert token not in caplog.text
    assert "v1=" not in caplog.text


def test_upstream_metrics_counted(fake, client, auth_headers):
    before = sample("gateway_upstream_requests_total", upstream="analysis", status="200")
    count_before = sample("gateway_upstream_request_duration_seconds_count", upstream="analysis")
    client.get("/api/analysis", **auth_headers)
    assert (
        sample("gateway_upstream_requests_total", upstream="analysis", status="200") == before + 1
    )
    assert (
        sample("gateway_upstream_request_duration_seconds_count", upstream="analysis")
        == count_before + 1
    )


def test_unknown_api_path_is_json_404(fake, client, auth_headers):
    response = client.get("/api/playlistsx", **auth_headers)
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert fake.calls() == []


@pytest.mark.parametrize("method", ["TRACE", "QUERY"])
def test_other_methods_are_answered_by_the_upstream_with_its_allow_header(
    fake, client, auth_headers, method
):
    # Found by schemathesis: the gateway's own 405 had no Allow header (RFC 9110).
    fake.script = lambda r: Answer(
        405,
        [("Content-Type", "application/json"), ("Allow", "GET, HEAD, OPTIONS")],
        b'{"detail": "Method \\"TRACE\\" not allowed.", "code": "method_not_allowed"}',
    )
    response = client.generic(method, "/api/analysis", **auth_headers)
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD, OPTIONS"
    [call] = fake.calls()
    assert call.method == method


@pytest.mark.parametrize("method", ["TRACE", "QUERY"])
def test_other_methods_need_a_token_like_any_other(fake, client, method):
    response = client.generic(method, "/api/auth/login")
    assert response.status_code == 401
    assert fake.calls() == []
