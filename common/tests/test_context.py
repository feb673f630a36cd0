"""Signed user context: only the gateway's fresh, untampered signature is accepted."""

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
