"""Signing-key rotation: rotate_jwt_key, both keys in the JWKS, withdrawal, grace period."""

from __future__ import annotations

import os
import time

import jwt
import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings
from jwt import PyJWKSet

from accounts import keys
from accounts.tests.conftest import JWKS, REFRESH, login

pytestmark = pytest.mark.django_db


@pytest.fixture
def key_file(tmp_path):
    """A key file of this test only (rotating the session's key would disturb other tests)."""
    path = tmp_path / "jwt" / "private.pem"
    keys.write_private_key(path, keys.generate_private_pem())
    with override_settings(JWT_PRIVATE_KEY="", JWT_PRIVATE_KEY_FILE=str(path), JWT_KEY_ID=""):
        yield path


def jwks_of(api) -> dict:
    response = api.get(JWKS)
    assert response.status_code == 200
    return response.json()


def kids(api) -> list[str]:
    return [key["kid"] for key in jwks_of(api)["keys"]]


def verify_like_the_gateway(api, token: str) -> dict:
    """What a verifier does: pick the JWKS key by the token's kid, check the RS256 signature."""
    keyset = PyJWKSet.from_dict(jwks_of(api))
    kid = jwt.get_unverified_header(token)["kid"]
    return jwt.decode(
        token,
        keyset[kid].key,
        algorithms=["RS256"],
        audience="musicstream",
        issuer="musicstream-auth",
    )


def test_rotate_lists_both_keys_until_the_previous_is_withdrawn(api, user, key_file, capsys):
    old_kid = keys.signing_key().kid
    before = login(api, user.username)
    assert kids(api) == [old_kid]

    call_command("rotate_jwt_key")
    out = capsys.readouterr().out
    new_kid = keys.signing_key().kid
    assert new_kid != old_kid
    assert new_kid in out and old_kid in out
    assert kids(api) == [new_kid, old_kid]  # the signing key first

    after = login(api, user.username)
    assert jwt.get_unverified_header(after["token"])["kid"] == new_kid
    assert jwt.get_unverified_header(before["token"])["kid"] == old_kid
    for token in (before["token"], after["token"]):  # tokens of both keys verify
        assert verify_like_the_gateway(api, token)["user_id"] == str(user.pk)
    # A refresh token signed by the old key still refreshes, into tokens of the new key.
    renewed = api.post(REFRESH, {"refresh": before["refresh"]}, format="json")
    assert renewed.status_code == 200, renewed.content
    assert jwt.get_unverified_header(renewed.json()["token"])["kid"] == new_kid

    call_command("rotate_jwt_key", "--withdraw-previous")
    assert old_kid in capsys.readouterr().out
    assert kids(api) == [new_kid]
    with pytest.raises(KeyError):
        verify_like_the_gateway(api, before["token"])
    assert verify_like_the_gateway(api, after["token"])["user_id"] == str(user.pk)
    assert api.post(REFRESH, {"refresh": after["refresh"]}, format="json").status_code == 200


def test_a_staged_key_is_published_before_it_signs(api, user, key_file, capsys):
    """--stage: verifiers that cache the JWKS know the next kid before any token carries it."""
    current = keys.signing_key().kid
    call_command("rotate_jwt_key", "--stage")
    staged = keys.next_key().kid
    assert staged in capsys.readouterr().out
    assert kids(api) == [current, staged]
    assert jwt.get_unverified_header(login(api, user.username)["token"])["kid"] == current
    call_command("rotate_jwt_key", "--stage")  # idempotent
    assert "already staged" in capsys.readouterr().out
    call_command("rotate_jwt_key", "--status")
    assert f"next key {staged}" in capsys.readouterr().out

    call_command("rotate_jwt_key")
    assert keys.signing_key().kid == staged
    assert keys.next_key() is None
    assert not keys.next_key_path(key_file).exists()
    assert kids(api) == [staged, current]
    token = login(api, user.username)["token"]
    assert verify_like_the_gateway(api, token)["user_id"] == str(user.pk)


def test_a_token_of_a_withdrawn_key_is_refused_here(api, user, key_file):
    old_refresh = login(api, user.username)["refresh"]
    call_command("rotate_jwt_key")
    call_command("rotate_jwt_key", "--withdraw-previous")
    response = api.post(REFRESH, {"refresh": old_refresh}, format="json")
    assert response.status_code == 401


def test_the_previous_key_leaves_after_the_grace_period(api, key_file):
    old_kid = keys.signing_key().kid
    call_command("rotate_jwt_key")
    with override_settings(JWT_PREVIOUS_KEY_GRACE_SECONDS=60):
        assert old_kid in kids(api)
        previous = keys.previous_key_path(key_file)
        past = time.time() - 61
        os.utime(previous, (past, past))
        assert kids(api) == [keys.signing_key().kid]
    with override_settings(JWT_PREVIOUS_KEY_GRACE_SECONDS=0):  # 0: until withdrawn
        assert old_kid in kids(api)


def test_a_second_rotation_drops_the_oldest_key(api, key_file, capsys):
    first = keys.signing_key().kid
    call_command("rotate_jwt_key")
    second = keys.signing_key().kid
    call_command("rotate_jwt_key")
    third = keys.signing_key().kid
    assert f"dropped the older previous key {first}" in capsys.readouterr().out
    assert kids(api) == [third, second]


def test_rotation_keeps_the_files_private(key_file):
    call_command("rotate_jwt_key", "--stage")
    assert oct(keys.next_key_path(key_file).stat().st_mode & 0o777) == oct(0o600)
    call_command("rotate_jwt_key")
    for path in (key_file, keys.previous_key_path(key_file)):
        assert oct(path.stat().st_mode & 0o777) == oct(0o600)
    assert "PRIVATE" not in keys.previous_key_path(key_file).read_text()  # public half only


def test_withdraw_without_a_previous_key_says_so(key_file, capsys):
    call_command("rotate_jwt_key", "--withdraw-previous")
    assert "no previous key" in capsys.readouterr().out


def test_status_shows_both_keys(key_file, capsys):
    call_command("rotate_jwt_key")
    capsys.readouterr()
    call_command("rotate_jwt_key", "--status")
    out = capsys.readouterr().out
    assert f"current key {keys.signing_key().kid}" in out
    assert "previous key" in out and "listed until" in out


def test_rotation_refuses_a_key_from_the_environment_or_a_named_kid(key_file):
    with (
        override_settings(JWT_PRIVATE_KEY=keys.generate_private_pem()),
        pytest.raises(CommandError, match="JWT_PREVIOUS_PUBLIC_KEY"),
    ):
        call_command("rotate_jwt_key")
    with override_settings(JWT_KEY_ID="fixed"), pytest.raises(CommandError, match="JWT_KEY_ID"):
        call_command("rotate_jwt_key")


def test_a_key_from_the_environment_lists_the_previous_public_key(api, user, key_file):
    old = keys.build(keys.generate_private_pem())
    old_token = jwt.encode(
        {"sub": "x"}, old.private_pem, algorithm="RS256", headers={"kid": old.kid}
    )
    with override_settings(
        JWT_PRIVATE_KEY=keys.generate_private_pem(), JWT_PREVIOUS_PUBLIC_KEY=old.public_pem
    ):
        assert kids(api) == [keys.signing_key().kid, old.kid]
        keyset = PyJWKSet.from_dict(jwks_of(api))
        assert jwt.decode(old_token, keyset[old.kid].key, algorithms=["RS256"]) == {"sub": "x"}
    with override_settings(JWT_PRIVATE_KEY=keys.generate_private_pem()):
        assert kids(api) == [keys.signing_key().kid]
