"""Settings of the auth service: shared defaults from `common`, then its own."""

from datetime import timedelta
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from common.settings import (
    celery_settings,
    defaults,
    env,
    env_float,
    env_int,
    env_str,
    state_dir,
)

BASE_DIR = Path(__file__).resolve().parent.parent

_base = defaults(service="auth", base_dir=BASE_DIR, project="auth_project")
globals().update(_base)
globals().update(celery_settings(service="auth"))

DEBUG: bool = _base["DEBUG"]
INSTALLED_APPS = [
    *_base["INSTALLED_APPS"],
    "rest_framework_simplejwt.token_blacklist",
    "accounts",
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": env_int("PASSWORD_MIN_LENGTH", 8)},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --------------------------------------------------------------------------- signing keys
# Only this service holds the private key. JWT_PRIVATE_KEY (PEM text) wins over
# JWT_PRIVATE_KEY_FILE (a path); the file is read when first needed, so `ensure_jwt_keys`
# can create it. DEBUG alone may fall back to a key in the state folder.
JWT_PRIVATE_KEY = env("JWT_PRIVATE_KEY") or ""
JWT_PRIVATE_KEY_FILE = env("JWT_PRIVATE_KEY_FILE") or ""
if not JWT_PRIVATE_KEY and not JWT_PRIVATE_KEY_FILE:
    if not DEBUG:
        raise ImproperlyConfigured(
            "No JWT signing key: set JWT_PRIVATE_KEY (PEM text) or JWT_PRIVATE_KEY_FILE (path "
            "to a PEM file; `manage.py ensure_jwt_keys` creates one). Only DEBUG=true falls "
            "back to a key generated in the state folder."
        )
    JWT_PRIVATE_KEY_FILE = str(state_dir() / "jwt" / "private.pem")
JWT_KEY_ID = env("JWT_KEY_ID") or ""
JWT_ISSUER = env_str("JWT_ISSUER", "musicstream-auth")
JWT_AUDIENCE = env_str("JWT_AUDIENCE", "musicstream")
JWT_ACCESS_LIFETIME_SECONDS = env_int("JWT_ACCESS_LIFETIME_SECONDS", 900)
JWT_REFRESH_LIFETIME_SECONDS = env_int("JWT_REFRESH_LIFETIME_SECONDS", 604800)
JWKS_MAX_AGE_SECONDS = env_int("JWKS_MAX_AGE_SECONDS", 300)
# Key rotation (`manage.py rotate_jwt_key`): the previous key stays in the JWKS and verifies
# tokens until withdrawn or until this long after the rotation (default: a refresh token's
# lifetime, so a rotation logs nobody out; 0 = until withdrawn). With JWT_PRIVATE_KEY, the
# previous key is JWT_PREVIOUS_PUBLIC_KEY (PEM), listed while set.
JWT_PREVIOUS_KEY_GRACE_SECONDS = env_int(
    "JWT_PREVIOUS_KEY_GRACE_SECONDS", JWT_REFRESH_LIFETIME_SECONDS
)
JWT_PREVIOUS_PUBLIC_KEY = env("JWT_PREVIOUS_PUBLIC_KEY") or ""

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(seconds=JWT_ACCESS_LIFETIME_SECONDS),
    "REFRESH_TOKEN_LIFETIME": timedelta(seconds=JWT_REFRESH_LIFETIME_SECONDS),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": False,
    # The keys themselves come from accounts.keys (see accounts.tokens): never from here.
    "ALGORITHM": "RS256",
    "SIGNING_KEY": None,
    "VERIFYING_KEY": "",
    "AUDIENCE": JWT_AUDIENCE,
    "ISSUER": JWT_ISSUER,
    "LEEWAY": 0,
    "USER_ID_FIELD": "id",
    "USER_ID_CLAIM": "user_id",
    "TOKEN_TYPE_CLAIM": "token_type",
    "JTI_CLAIM": "jti",
}

# --------------------------------------------------------------------------- throttling
# Client IP: the last X-Forwarded-For entry, the one the gateway appended (NUM_PROXIES hops).
# login_ip counts every login attempt of an address; login_username_ip counts failed logins of
# one username from one address (tight: it only locks out that address); login_username counts
# failed logins of one username from all addresses (looser: slows distributed guessing).
REST_FRAMEWORK = {
    **_base["REST_FRAMEWORK"],
    "NUM_PROXIES": env_int("NUM_PROXIES", 1),
    "DEFAULT_THROTTLE_RATES": {
        "login_username_ip": env_str("LOGIN_THROTTLE_RATE_USERNAME_IP", "5/min"),
        "login_username": env_str("LOGIN_THROTTLE_RATE_USERNAME", "20/min"),
        "login_ip": env_str("LOGIN_THROTTLE_RATE_IP", "30/min"),
        "register_ip": env_str("REGISTER_THROTTLE_RATE_IP", "10/min"),
    },
}

# --------------------------------------------------------------------------- outbox
# The relay thread of each web process publishes right after commit; the outbox_relay
# process sweeps what is older than the grace period (broker down, process died).
OUTBOX_RELAY_INTERVAL_SECONDS = env_float("OUTBOX_RELAY_INTERVAL_SECONDS", 2.0)
OUTBOX_RELAY_GRACE_SECONDS = env_float("OUTBOX_RELAY_GRACE_SECONDS", 10.0)
OUTBOX_RELAY_BATCH_SIZE = env_int("OUTBOX_RELAY_BATCH_SIZE", 100)
OUTBOX_RELAY_MAX_BACKOFF_SECONDS = env_float("OUTBOX_RELAY_MAX_BACKOFF_SECONDS", 30.0)
# Seconds one publish of the relay may take (connect, send, confirm).
OUTBOX_PUBLISH_TIMEOUT = env_float("OUTBOX_PUBLISH_TIMEOUT", 3.0)

SPECTACULAR_SETTINGS = {
    **_base["SPECTACULAR_SETTINGS"],
    "TITLE": "Auth service",
    "DESCRIPTION": (
        "Users, registration, login, token refresh with rotation, logout, profile. Tokens "
        "are RS256 JWTs; the public keys are published at /api/auth/.well-known/jwks.json."
    ),
}
