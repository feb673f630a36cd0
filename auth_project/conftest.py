"""Fixtures for every test of the auth service: its own signing key, a fast hasher, clean state."""

from __future__ import annotations

import pytest
from accounts import keys
from accounts.outbox import process_relay
from django.core.cache import caches
from django.test.utils import override_settings


@pytest.fixture(scope="session", autouse=True)
def jwt_key_file(tmp_path_factory):
    """A key pair of this test session only; settings point at it (never the state folder's)."""
    path = tmp_path_factory.mktemp("jwt") / "private.pem"
    keys.write_private_key(path, keys.generate_private_pem())
    override = override_settings(
        JWT_PRIVATE_KEY="",
        JWT_PRIVATE_KEY_FILE=str(path),
        JWT_KEY_ID="",
        # Hashing is not what these tests measure; the real hashers stay in production.
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
    )
    override.enable()
    yield path
    override.disable()


@pytest.fixture(autouse=True)
def _clean_cache_and_relay():
    """Throttle counters never leak between tests; no relay thread outlives its test."""
    _clear_cache()
    yield
    process_relay.install(None)
    _clear_cache()


def _clear_cache() -> None:
    # This run's key prefix only: never FLUSHDB a shared Redis.
    caches["default"].delete_pattern("*")
