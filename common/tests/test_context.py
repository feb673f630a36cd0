"""Signed user context: only the gateway's fresh, untampered signature for this very request
(service, method, path, body) is accepted, and a write only once."""

import json
import time

import pytest
from django.core.cache import cache
from django.test import override_settings
from rest_framework.test import APIClient

from common import context
from common.testclient import ContextClient, context_headers

KEY = context.derive_key("common-tests-internal", "common-tests")
USER = {"id": "42", "username": "ada"}
WHOAMI = context.Signed(audience="common-tests", method="GET", path="/whoami")


def headers_for(user=USER, key=KEY, now=None, target=WHOAMI):
    signed = context.sign(user, key=key, target=target, now=now)
    return {"HTTP_X_USER": signed["X-User"], "HTTP_X_USER_SIGNATURE": signed["X-User-Signature"]}


def _verify(signed, target=WHOAMI, key=KEY):
    return context.verify(signed["X-User"], signed["X-User-Signature"], key=key, target=target)


def test_sign_then_verify_round_trip():
    signed = context.sign(USER, key=KEY, target=WHOAMI)
    user, nonce = _verify(signed)
    assert user == USER
    assert len(nonce) == 2 * context.NONCE_BYTES


def test_every_signature_has_its_own_nonce():
    one, two = (context.sign(USER, key=KEY, target=WHOAMI) for _ in range(2))
    assert one["X-User-Signature"] != two["X-User-Signature"]


def test_non_ascii_username_stays_header_safe():
    signed = context.sign({"id": "1", "username": "José"}, key=KEY, target=WHOAMI)
    assert signed["X-User"].isascii()
    assert _verify(signed)[0]["username"] == "José"


def test_keys_are_per_service_and_differ_from_the_secret():
    keys = {context.derive_key("s3cret", name) for name in ("auth", "playlist", "analysis")}
    assert len(keys) == 3
    assert "s3cret" not in keys


@pytest.mark.parametrize(
    "other",
    [
        context.Signed(audience="common-tests", method="GET", path="/whoami?x=1"),
        context.Signed(audience="common-tests", method="GET", path="/elsewhere"),
        context.Signed(audience="common-tests", method="DELETE", path="/whoami"),
        context.Signed(audience="common-tests", method="GET", path="/whoami", body=b"{}"),
        context.Signed(audience="playlist", method="GET", path="/whoami"),
    ],
    ids=["query", "path", "method", "body", "audience"],
)
def test_a_context_signed_for_one_request_fails_on_another(other):
    signed = context.sign(USER, key=KEY, target=WHOAMI)
    with pytest.raises(context.ContextError, match=context.ERROR_BAD_SIGNATURE):
        _verify(signed, target=other)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda v, s: (None, s), context.ERROR_MISSING),
        (lambda v, s: (v, None), context.ERROR_MISSING),
        (lambda v, s: (v.replace("ada", "eve"), s), context.ERROR_BAD_SIGNATURE),  # tampered
        (lambda v, s: (v, s[:-4] + "0000"), context.ERROR_BAD_SIGNATURE),  # forged signature
        (lambda v, s: (v, s.replace(",n=", ",n=0")), context.ERROR_BAD_SIGNATURE),  # nonce
        (lambda v, s: (v, "garbage"), context.ERROR_MALFORMED),
        (lambda v, s: (v, "t=abc,n=1,v2=00"), context.ERROR_MALFORMED),
        (lambda v, s: (v, "t=1,v1=00"), context.ERROR_MALFORMED),  # the old format
        (lambda v, s: (v, "t=1,n=a-b,v2=00"), context.ERROR_MALFORMED),
        (lambda v, s: (v, "t=1,n=,v2=00"), context.ERROR_MALFORMED),
    ],
)
def test_verify_rejects(mutate, message):
    signed = context.sign(USER, key=KEY, target=WHOAMI)
    value, signature = mutate(signed["X-User"], signed["X-User-Signature"])
    with pytest.raises(context.ContextError, match=message):
        context.verify(value, signature, key=KEY, target=WHOAMI)


def test_verify_rejects_other_key():
    signed = context.sign(USER, key="someone-else", target=WHOAMI)
    with pytest.raises(context.ContextError, match=context.ERROR_BAD_SIGNATURE):
        _verify(signed)


def test_verify_rejects_expired_and_future():
    old = context.sign(USER, key=KEY, target=WHOAMI, now=time.time() - context.MAX_AGE_SECONDS - 1)
    with pytest.raises(context.ContextError, match=context.ERROR_EXPIRED):
        _verify(old)
    future = context.sign(USER, key=KEY, target=WHOAMI, now=time.time() + 120)
    with pytest.raises(context.ContextError, match=context.ERROR_EXPIRED):
        _verify(future)


def test_verify_rejects_value_without_identity():
    signed = context.sign({"username": "no-id"}, key=KEY, target=WHOAMI)
    with pytest.raises(context.ContextError, match=context.ERROR_MALFORMED):
        _verify(signed)


def test_service_view_gets_user_without_database():
    response = APIClient().get("/whoami", **headers_for())
    assert response.status_code == 200
    assert response.json()["id"] == "42"
    assert response.json()["username"] == "ada"


def test_context_client_signs_each_request_for_itself():
    api = ContextClient().as_user("7", "bo")
    assert api.get("/whoami").json()["username"] == "bo"
    assert api.get("/whoami", {"page": "2"}).status_code == 200  # query signed too
    assert api.post("/whoami", {"a": [1, 2]}, format="json").json()["id"] == "7"
    assert api.as_user(None).get("/whoami").status_code == 401


@pytest.mark.parametrize(
    "headers",
    [
        {},  # missing
        {"HTTP_X_USER": '{"id":"1","username":"eve"}'},  # unsigned
        {**headers_for(), "HTTP_X_USER": '{"id":"1","username":"eve"}'},  # tampered
        headers_for(key="forged"),  # forged
        headers_for(now=time.time() - 61),  # expired
        headers_for(target=context.Signed(audience="common-tests", method="GET", path="/")),
        headers_for(target=context.Signed(audience="auth", method="GET", path="/whoami")),
    ],
    ids=["missing", "unsigned", "tampered", "forged", "expired", "other-path", "other-service"],
)
def test_service_answers_401_on_bad_context(headers):
    response = APIClient().get("/whoami", **headers)
    assert response.status_code == 401
    body = response.json()
    assert set(body) == {"detail", "code"}


def test_a_write_is_accepted_once_and_its_replay_refused():
    body = json.dumps({"name": "x"}).encode()
    headers = context_headers(USER, method="POST", path="/whoami", body=body)
    first = APIClient().post("/whoami", body, content_type="application/json", **headers)
    assert first.status_code == 200
    again = APIClient().post("/whoami", body, content_type="application/json", **headers)
    assert again.status_code == 401
    assert again.json()["detail"] == context.ERROR_REPLAYED


def test_a_read_may_be_repeated_within_its_minute():
    headers = headers_for()
    assert APIClient().get("/whoami", **headers).status_code == 200
    assert APIClient().get("/whoami", **headers).status_code == 200


def test_a_write_with_a_body_other_than_the_signed_one_is_refused():
    headers = context_headers(USER, method="POST", path="/whoami", body=b'{"name":"x"}')
    response = APIClient().post(
        "/whoami", b'{"name":"y"}', content_type="application/json", **headers
    )
    assert response.status_code == 401
    assert response.json()["detail"] == context.ERROR_BAD_SIGNATURE


def test_cache_down_lets_a_signed_write_through(monkeypatch):
    def broken(*args, **kwargs):
        raise ConnectionError("redis down")

    monkeypatch.setattr(cache, "add", broken)
    api = ContextClient().as_user("42", "ada")
    assert api.post("/whoami", {"a": 1}, format="json").status_code == 200


@override_settings(INTERNAL_SECRET="rotated")
def test_service_uses_configured_secret():
    assert APIClient().get("/whoami", **headers_for()).status_code == 401
    rotated = context.derive_key("rotated", "common-tests")
    assert APIClient().get("/whoami", **headers_for(key=rotated)).status_code == 200


@override_settings(CONTEXT_KEY="own-key", INTERNAL_SECRET="")
def test_service_with_its_own_key_needs_no_internal_secret():
    assert APIClient().get("/whoami", **headers_for()).status_code == 401
    assert APIClient().get("/whoami", **headers_for(key="own-key")).status_code == 200


# Odd header forms a client can send straight to a service: each is a 401, never a 500.
def _valid():
    signed = context.sign(USER, key=KEY, target=WHOAMI)
    return signed["X-User"], signed["X-User-Signature"]


ODD_CONTEXTS = {
    "signature-non-ascii": lambda v, s: (v, "t=1,n=1,v2=\u00e9\u00e9\u00e9"),
    "signature-emoji": lambda v, s: (v, s[:-2] + "\U0001f600"),
    "signature-latin1-mojibake": lambda v, s: (v, s + "\u00c3\u00a9\u00ff"),
    "signature-nul": lambda v, s: (v, s + "\x00"),
    "signature-lone-surrogate": lambda v, s: (v, s[:-1] + "\udcff"),
    "value-non-ascii": lambda v, s: (v.replace("ada", "\u00e4da"), s),
    "value-nul": lambda v, s: (v + "\x00", s),
    "signature-empty": lambda v, s: (v, ""),
    "value-empty": lambda v, s: ("", s),
    "signature-very-long": lambda v, s: (v, s + "0" * context.MAX_HEADER_LENGTH),
    "value-very-long": lambda v, s: (v[:-1] + ',"x":"' + "a" * context.MAX_HEADER_LENGTH + '"}', s),
    "timestamp-huge": lambda v, s: (v, "t=" + "9" * 5000 + ",n=1,v2=00"),
    "timestamp-signed": lambda v, s: (v, "t=+1,n=1,v2=00"),
    "timestamp-underscore": lambda v, s: (v, "t=1_0,n=1,v2=00"),
    "timestamp-empty": lambda v, s: (v, "t=,n=1,v2=00"),
    "no-v2": lambda v, s: (v, ",".join(s.split(",")[:2])),
    "no-equals": lambda v, s: (v, "t,n,v2"),
    "only-commas": lambda v, s: (v, ",,,"),
    "signature-bytes": lambda v, s: (v, s.encode()),
    "value-bytes": lambda v, s: (v.encode(), s),
    "signature-int": lambda v, s: (v, 12345),
    "value-list": lambda v, s: ([v], s),
    "value-dict": lambda v, s: ({"id": "1"}, s),
}


@pytest.mark.parametrize("mutate", ODD_CONTEXTS.values(), ids=ODD_CONTEXTS.keys())
def test_verify_refuses_odd_forms_with_context_error_only(mutate):
    value, signature = mutate(*_valid())
    with pytest.raises(context.ContextError):
        context.verify(value, signature, key=KEY, target=WHOAMI)


@pytest.mark.parametrize("mutate", ODD_CONTEXTS.values(), ids=ODD_CONTEXTS.keys())
def test_service_answers_401_json_on_odd_context(mutate):
    value, signature = mutate(*_valid())
    response = APIClient().get("/whoami", HTTP_X_USER=value, HTTP_X_USER_SIGNATURE=signature)
    assert response.status_code == 401
    assert set(response.json()) == {"detail", "code"}
    assert response.json()["code"] == "authentication_failed"


def _raw_get(port, header_lines):
    """GET /whoami over a socket with raw header bytes; returns (status, body bytes)."""
    import socket

    request = b"GET /whoami HTTP/1.0\r\nHost: testserver\r\n" + b"".join(
        line + b"\r\n" for line in header_lines
    )
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request + b"\r\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.fixture
def wsgi_port():
    """The test project behind a real WSGI server: headers arrive as the bytes a client sent."""
    import threading
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from django.core.handlers.wsgi import WSGIHandler

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    server = make_server("127.0.0.1", 0, WSGIHandler(), handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_port
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    "raw",
    [
        b"t=1,n=1,v2=\xc3\xa9\xc3\xa9",  # UTF-8 bytes
        b"t=1,n=1,v2=\xff\xfe\x80",  # not UTF-8 at all
        b"t=\xd9\xa1\xd9\xa2,n=1,v2=00",  # Arabic-Indic digits
        b"",  # empty
        b"t=1,n=1,v2=" + b"f" * 8000,  # very long
    ],
    ids=["utf8", "invalid-utf8", "unicode-digits", "empty", "very-long"],
)
def test_raw_non_ascii_signature_over_http_is_401(wsgi_port, raw):
    value, _ = _valid()
    status, body = _raw_get(wsgi_port, [b"X-User: " + value.encode(), b"X-User-Signature: " + raw])
    assert status == 401
    assert set(json.loads(body)) == {"detail", "code"}


def test_raw_non_ascii_user_over_http_is_401_and_valid_one_still_200(wsgi_port):
    value, signature = _valid()
    status, _ = _raw_get(
        wsgi_port,
        [
            b"X-User: " + value.encode().replace(b"ada", b"\xc3\xa4da"),
            b"X-User-Signature: " + signature.encode(),
        ],
    )
    assert status == 401
    status, body = _raw_get(
        wsgi_port, [b"X-User: " + value.encode(), b"X-User-Signature: " + signature.encode()]
    )
    assert status == 200
    assert json.loads(body)["username"] == "ada"
