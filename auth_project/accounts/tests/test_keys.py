"""Signing-key configuration: env PEM or file, ensure_jwt_keys, start-up failures."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.test import override_settings

from accounts import keys
from accounts.tokens import RefreshToken

PROJECT = Path(__file__).resolve().parents[2]


def test_ensure_jwt_keys_creates_a_private_rsa_2048_key_once(tmp_path, capsys):
    path = tmp_path / "state" / "jwt" / "private.pem"
    with override_settings(JWT_PRIVATE_KEY="", JWT_PRIVATE_KEY_FILE=str(path)):
        call_command("ensure_jwt_keys")
        assert "created" in capsys.readouterr().out
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        first = path.read_text()
        assert serialization.load_pem_private_key(first.encode(), None).key_size == 2048
        assert keys.build(first).kid
        call_command("ensure_jwt_keys")  # idempotent: the existing key is kept
        assert "exists" in capsys.readouterr().out
        assert path.read_text() == first


def test_ensure_jwt_keys_leaves_a_key_from_the_environment_alone(tmp_path, capsys):
    path = tmp_path / "unused.pem"
    with override_settings(
        JWT_PRIVATE_KEY=keys.generate_private_pem(), JWT_PRIVATE_KEY_FILE=str(path)
    ):
        call_command("ensure_jwt_keys")
    assert not path.exists()
    assert "JWT_PRIVATE_KEY is set" in capsys.readouterr().out


@pytest.mark.django_db
def test_pem_text_wins_over_the_file_and_kid_can_be_named(jwt_key_file):
    pem = keys.generate_private_pem()
    with override_settings(JWT_PRIVATE_KEY=pem, JWT_KEY_ID="key-2026"):
        signing = keys.signing_key()
        assert signing.private_pem == pem
        assert keys.jwks()["keys"][0]["kid"] == "key-2026"
        token = str(RefreshToken())
        assert jwt.get_unverified_header(token)["kid"] == "key-2026"
        jwt.decode(token, signing.public_pem, algorithms=["RS256"], audience="musicstream")
    assert keys.signing_key().private_pem == jwt_key_file.read_text()


def test_a_missing_key_file_fails_naming_the_variable(tmp_path):
    with (
        override_settings(
            JWT_PRIVATE_KEY="", JWT_PRIVATE_KEY_FILE=str(tmp_path / "no.pem"), DEBUG=False
        ),
        pytest.raises(ImproperlyConfigured, match="JWT_PRIVATE_KEY_FILE"),
    ):
        keys.signing_key()


def test_debug_generates_a_missing_key_file(tmp_path):
    path = tmp_path / "dev" / "private.pem"
    with override_settings(JWT_PRIVATE_KEY="", JWT_PRIVATE_KEY_FILE=str(path), DEBUG=True):
        assert keys.signing_key().kid
    assert path.exists()


@pytest.mark.parametrize(
    "pem, message",
    [
        ("not a key", "PEM"),
        ("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "PEM"),
    ],
)
def test_an_unusable_key_fails_clearly(pem, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        keys.build(pem)


def test_small_or_non_rsa_keys_are_refused():
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    def pem_of(key):
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()

    with pytest.raises(ImproperlyConfigured, match="2048"):
        keys.build(pem_of(rsa.generate_private_key(public_exponent=65537, key_size=1024)))
    with pytest.raises(ImproperlyConfigured, match="RSA"):
        keys.build(pem_of(ec.generate_private_key(ec.SECP256R1())))


def _start(env_overrides: dict[str, str | None]) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    for name, value in env_overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return subprocess.run(
        [sys.executable, str(PROJECT / "manage.py"), "check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_start_up_without_any_key_fails_when_debug_is_off():
    result = _start({"DEBUG": "false", "JWT_PRIVATE_KEY": None, "JWT_PRIVATE_KEY_FILE": None})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "JWT_PRIVATE_KEY" in result.stderr and "JWT_PRIVATE_KEY_FILE" in result.stderr


def test_wsgi_start_up_fails_when_the_key_file_is_missing(tmp_path):
    env = dict(os.environ)
    env.update(
        DEBUG="false", JWT_PRIVATE_KEY_FILE=str(tmp_path / "absent.pem"), STATE_DIR=str(tmp_path)
    )
    env.pop("JWT_PRIVATE_KEY", None)
    result = subprocess.run(
        [sys.executable, "-c", "import auth_project.wsgi"],
        env=env,
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "JWT_PRIVATE_KEY_FILE" in result.stderr
