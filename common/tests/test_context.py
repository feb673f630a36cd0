"""Signed user context: only the gateway's fresh, untampered signature is accepted."""

import json
import time

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from common import context

SECRET = "common-tests-internal"
USER = {"id": "42", "username": "ada"}


def headers_for(user=USER, secret=SECRET, now=None):
    signed = context.sign(user, secret=secret, now=now)
    return {"HTTP_X_USER": signed["X-User"], "HTTP_X_USER_SIGNATURE": signed["X-User-Signature"]}


def test_sign_then_verify_round_trip():
    signed = context.sign(USER, secret=SECRET)
    assert context.verify(signed["X-User"], signed["X-User-Signature"], secret=SECRET) == USER


def test_non_ascii_username_stays_header_safe():
    signed = context.sign({"id": "1", "username": "José"}, secret=SECRET)
    assert signed["X-User"].isascii()
    assert (
        context.verify(signed["X-User"], signed["X-User-Signature"], secret=SECRET)["username"]
        == "José"
    )


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda v, s: (None, s), context.ERROR_MISSING),
        (lambda v, s: (v, None), context.ERROR_MISSING),
        (lambda v, s: (v.replace("ada", "eve"), s), context.ERROR_BAD_SIGNATURE),  # tampered
        (lambda v, s: (v, s[:-4] + "0000"), context.ERROR_BAD_SIGNATURE),  # forged signature
        (lambda v, s: (v, "garbage"), context.ERROR_MALFORMED),
        (lambda v, s: (v, "t=abc,v1=00"), context.ERROR_MALFORMED),
    ],
)
def test_verify_rejects(mutate, message):
    signed = context.sign(USER, secret=SECRET)
    value, signature = mutate(signed["X-User"], signed["X-User-Signature"])
    with pytest.raises(context.ContextError, match=message):
        context.verify(value, signature, secret=SECRET)


def test_verify_rejects_other_secret():
    signed = context.sign(USER, secret="someone-else")
    with pytest.raises(context.ContextError, match=context.ERROR_BAD_SIGNATURE):
        context.verify(signed["X-User"], signed["X-User-Signature"], secret=SECRET)


def test_verify_rejects_expired_and_future():
    old = context.sign(USER, secret=SECRET, now=time.time() - context.MAX_AGE_SECONDS - 1)
    with pytest.raises(context.ContextError, match=context.ERROR_EXPIRED):
        context.verify(old["X-User"], old["X-User-Signature"], secret=SECRET)
    future = context.sign(USER, secret=SECRET, now=time.time() + 120)
    with pytest.raises(context.ContextError, match=context.ERROR_EXPIRED):
        context.verify(future["X-User"], future["X-User-Signature"], secret=SECRET)


def test_verify_rejects_value_without_identity():
    signed = context.sign({"username": "no-id"}, secret=SECRET)
    with pytest.raises(context.ContextError, match=context.ERROR_MALFORMED):
        context.verify(signed["X-User"], signed["X-User-Signature"], secret=SECRET)


def test_service_view_gets_user_without_database():
    response = APIClient().get("/whoami", **headers_for())
    assert response.status_code == 200
    assert response.json()["id"] == "42"
    assert response.json()["username"] == "ada"


@pytest.mark.parametrize(
    "headers",
    [
        {},  # missing
        {"HTTP_X_USER": '{"id":"1","username":"eve"}'},  # unsigned
        {**headers_for(), "HTTP_X_USER": '{"id":"1","username":"eve"}'},  # tampered
        headers_for(secret="forged"),  # forged
        headers_for(now=time.time() - 61),  # expired
    ],
    ids=["missing", "unsigned", "tampered", "forged", "expired"],
)
def test_service_answers_401_on_bad_context(headers):
    response = APIClient().get("/whoami", **headers)
    assert response.status_code == 401
    body = response.json()
    assert set(body) == {"detail", "code"}


@override_settings(INTERNAL_SECRET="rotated")
def test_service_uses_configured_secret():
    assert APIClient().get("/whoami", **headers_for()).status_code == 401
    assert APIClient().get("/whoami", **headers_for(secret="rotated")).status_code == 200


# Odd header forms a client can send straight to a service: each is a 401, never a 500.
def _valid():
    signed = context.sign(USER, secret=SECRET)
    return signed["X-User"], signed["X-User-Signature"]


ODD_CONTEXTS = {
    "signature-non-ascii": lambda v, s: (v, "t=1,v1=\u00e9\u00e9\u00e9"),
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
    "timestamp-huge": lambda v, s: (v, "t=" + "9" * 5000 + ",v1=00"),
    "timestamp-signed": lambda v, s: (v, "t=+1,v1=00"),
    "timestamp-underscore": lambda v, s: (v, "t=1_0,v1=00"),
    "timestamp-empty": lambda v, s: (v, "t=,v1=00"),
    "no-v1": lambda v, s: (v, s.split(",")[0]),
    "no-equals": lambda v, s: (v, "t,v1"),
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
        context.verify(value, signature, secret=SECRET)


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
        b"t=1,v1=\xc3\xa9\xc3\xa9",  # UTF-8 bytes
        b"t=1,v1=\xff\xfe\x80",  # not UTF-8 at all
        b"t=\xd9\xa1\xd9\xa2,v1=00",  # Arabic-Indic digits
        b"",  # empty
        b"t=1,v1=" + b"f" * 8000,  # very long
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
