"""Settings helpers shared by the four services: environment first, working local defaults.

Each service's settings module does ``globals().update(defaults(...))`` and then adds what is
its own. Every value that differs between machines comes from the environment.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from redis.backoff import NoBackoff
from redis.retry import Retry

from common.logging import logging_config

REPO_ROOT = Path(__file__).resolve().parent.parent

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


def env_str(name: str, default: str) -> str:
    value = env(name, default)
    assert value is not None
    return value


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {value!r}")


def env_int(name: str, default: int) -> int:
    value = env(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from exc


def env_float(name: str, default: float) -> float:
    value = env(name)
    if value is None:
        return default
    try:
        return float(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a number, got {value!r}") from exc


def env_list(name: str, default: list[str]) -> list[str]:
    value = env(name)
    if value is None:
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def state_dir() -> Path:
    """Where the single-machine default keeps keys, static files and metrics folders."""
    path = Path(env_str("STATE_DIR", str(REPO_ROOT / ".state")))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def required(name: str, *, what: str) -> str:
    """A server's URL: no in-process stand-in exists, so start-up fails without one."""
    value = env(name)
    if value:
        return value
    raise ImproperlyConfigured(
        f"{name} is not set: this service needs {what}. `python manage_all.py up` starts "
        "local servers and sets it; otherwise set it (see infra/.env-sample)."
    )


def secret(name: str, *, debug: bool, dev_default: str) -> str:
    """A secret from the environment; only DEBUG may fall back to an insecure default."""
    value = env(name)
    if value:
        return value
    if debug:
        return dev_default
    raise ImproperlyConfigured(
        f"{name} is not set. Set it in the environment (see infra/.env-sample); "
        "only DEBUG=true runs with a development default."
    )


def database(*, service: str) -> dict[str, Any]:
    """DATABASES['default'] from DATABASE_URL (PostgreSQL).

    Every wait on the database is bounded: connecting (``DB_CONNECT_TIMEOUT`` s), a statement
    (``DB_STATEMENT_TIMEOUT_MS``) and a lock wait (``DB_LOCK_TIMEOUT_MS``, e.g. a row held by
    another session); each one over its bound raises OperationalError. 0 switches one off
    (e.g. ``DB_STATEMENT_TIMEOUT_MS=0`` for a long data migration).
    """
    url = required("DATABASE_URL", what=f"a PostgreSQL database for {service}")
    parsed = dj_database_url.parse(
        url, conn_max_age=env_int("DB_CONN_MAX_AGE", 60), conn_health_checks=True
    )
    config: dict[str, Any] = dict(parsed)
    options: dict[str, Any] = dict(config.get("OPTIONS") or {})
    options.setdefault("connect_timeout", env_int("DB_CONNECT_TIMEOUT", 5))
    server_side = (
        f"-c statement_timeout={env_int('DB_STATEMENT_TIMEOUT_MS', 30000)}"
        f" -c lock_timeout={env_int('DB_LOCK_TIMEOUT_MS', 5000)}"
    )
    # After any ``options`` of the URL's query string (the later -c wins in PostgreSQL).
    options["options"] = " ".join(filter(None, [options.get("options"), server_side]))
    config["OPTIONS"] = options
    test_name = env("TEST_DATABASE_NAME")
    if test_name:
        config["TEST"] = {"NAME": test_name}
    return config


def cache(*, service: str) -> dict[str, Any]:
    """CACHES['default']: django-redis on REDIS_URL, shared by every process of the service."""
    prefix = env_str("CACHE_KEY_PREFIX", "ms")
    url = required("REDIS_URL", what="Redis (cache, revocations, throttles, breaker state)")
    return {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": url,
        # No ":" inside the prefix: django-redis splits keys on it to strip the prefix.
        "KEY_PREFIX": f"{prefix}-{service}",
        "TIMEOUT": env_int("CACHE_TTL_SECONDS", 60),
        "OPTIONS": {
            "CLIENT_CLASS": "django_redis.client.DefaultClient",
            "SOCKET_CONNECT_TIMEOUT": env_float("REDIS_CONNECT_TIMEOUT", 0.5),
            "SOCKET_TIMEOUT": env_float("REDIS_TIMEOUT", 0.5),
            # One quick retry, not redis-py's default ten with backoff: a dead Redis must
            # cost a request milliseconds, and callers fall back (database, fail-open).
            "CONNECTION_POOL_KWARGS": {"retry": Retry(NoBackoff(), 1)},
        },
    }


def broker_url() -> str:
    """CELERY_BROKER_URL: RabbitMQ (Compose, production) or Redis (the single-machine default)."""
    return required("CELERY_BROKER_URL", what="a Celery broker (RabbitMQ or Redis)")


def celery_settings(*, service: str) -> dict[str, Any]:
    """CELERY_* settings shared by publishers and workers (JSON only, at-least-once)."""
    url = broker_url()
    transport_options: dict[str, Any]
    if url.split("://", 1)[0] in ("redis", "rediss"):
        transport_options = {
            # A message a worker took but never acknowledged (it died) is delivered again
            # after this long: longer than any task may run (CELERY_TASK_TIME_LIMIT).
            "visibility_timeout": env_int("CELERY_REDIS_VISIBILITY_TIMEOUT", 120),
            # Test runs share one Redis: their queues live under a prefix of their own.
            "global_keyprefix": env_str("CELERY_BROKER_KEY_PREFIX", ""),
            "socket_timeout": env_float("CELERY_BROKER_CONNECTION_TIMEOUT", 2.0),
            "socket_connect_timeout": env_float("CELERY_BROKER_CONNECTION_TIMEOUT", 2.0),
        }
    else:
        transport_options = {"confirm_publish": True}
    return {
        "CELERY_BROKER_URL": url,
        "CELERY_BROKER_TRANSPORT_OPTIONS": transport_options,
        "CELERY_BROKER_CONNECTION_TIMEOUT": env_float("CELERY_BROKER_CONNECTION_TIMEOUT", 2.0),
        "CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP": True,
        "CELERY_BROKER_HEARTBEAT": 30,
        "CELERY_TASK_SERIALIZER": "json",
        "CELERY_RESULT_SERIALIZER": "json",
        "CELERY_ACCEPT_CONTENT": ["json"],
        "CELERY_RESULT_BACKEND": None,
        "CELERY_TASK_IGNORE_RESULT": True,
        "CELERY_TASK_ACKS_LATE": True,
        "CELERY_TASK_REJECT_ON_WORKER_LOST": True,
        "CELERY_TASK_ACKS_ON_FAILURE_OR_TIMEOUT": False,
        "CELERY_WORKER_PREFETCH_MULTIPLIER": env_int("CELERY_WORKER_PREFETCH_MULTIPLIER", 1),
        "CELERY_TASK_TIME_LIMIT": env_int("CELERY_TASK_TIME_LIMIT", 60),
        "CELERY_TASK_SOFT_TIME_LIMIT": env_int("CELERY_TASK_SOFT_TIME_LIMIT", 50),
        "CELERY_WORKER_HIJACK_ROOT_LOGGER": False,
        "CELERY_WORKER_SEND_TASK_EVENTS": True,
        "CELERY_TASK_SEND_SENT_EVENT": True,
        "CELERY_TASK_CREATE_MISSING_QUEUES": False,
    }


def defaults(*, service: str, base_dir: Path, project: str, orm: bool = True) -> dict[str, Any]:
    """The settings every service shares; the service module adds its own on top.

    ``orm=False``: the service keeps no data in Django's ORM (gateway, playlist), so it has
    no database at all (``DATABASES = {}``).
    """
    debug = env_bool("DEBUG", False)
    log_format = env_str("LOG_FORMAT", "json")
    if log_format not in ("json", "text"):
        raise ImproperlyConfigured(f"LOG_FORMAT must be 'json' or 'text', got {log_format!r}")
    return {
        "SERVICE_NAME": service,
        "BASE_DIR": base_dir,
        "DEBUG": debug,
        "SECRET_KEY": secret("SECRET_KEY", debug=debug, dev_default=f"dev-insecure-{service}"),
        # The user-context key (common.context): this service's own CONTEXT_KEY, else one
        # derived from INTERNAL_SECRET, which a service given its own key does not need.
        "CONTEXT_KEY": env_str("CONTEXT_KEY", ""),
        "INTERNAL_SECRET": env_str("INTERNAL_SECRET", "")
        if env_str("CONTEXT_KEY", "")
        else secret("INTERNAL_SECRET", debug=debug, dev_default="dev-internal"),
        "ALLOWED_HOSTS": env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", service]),
        "INSTALLED_APPS": [
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "django.contrib.staticfiles",
            "rest_framework",
            "drf_spectacular",
            "drf_spectacular_sidecar",
            "django_prometheus",
        ],
        "MIDDLEWARE": [
            # django-prometheus' request metrics, the four series dashboards read (first: it
            # counts the answers of the middlewares below too).
            "common.metrics.HttpMetricsMiddleware",
            "django.middleware.security.SecurityMiddleware",
            "whitenoise.middleware.WhiteNoiseMiddleware",
            "common.request_id.RequestIDMiddleware",
            "common.request_id.BodySizeLimitMiddleware",
            "django.middleware.common.CommonMiddleware",
        ],
        "ROOT_URLCONF": f"{project}.urls",
        "WSGI_APPLICATION": f"{project}.wsgi.application",
        "TEMPLATES": [
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "DIRS": [],
                "APP_DIRS": True,
                "OPTIONS": {
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                    ]
                },
            }
        ],
        "DATABASES": {"default": database(service=service)} if orm else {},
        "CACHES": {"default": cache(service=service)},
        "DEFAULT_AUTO_FIELD": "django.db.models.BigAutoField",
        "LANGUAGE_CODE": "en-us",
        "TIME_ZONE": "UTC",
        "USE_I18N": True,
        "USE_TZ": True,
        "STATIC_URL": "/static/",
        "STATIC_ROOT": str(_mkdir(state_dir() / "static" / service)),
        "WHITENOISE_USE_FINDERS": True,
        "WHITENOISE_AUTOREFRESH": False,
        "DATA_UPLOAD_MAX_MEMORY_SIZE": env_int("MAX_BODY_BYTES", 1024 * 1024),
        # Deepest JSON nesting a request body may have (common/parsers.py).
        "JSON_MAX_DEPTH": env_int("JSON_MAX_DEPTH", 32),
        "APPEND_SLASH": False,
        # Services behind the gateway build absolute links (pagination, the browsable API) for
        # the host and scheme the client used, which the gateway forwards; the gateway itself
        # trusts no such header from its clients.
        "USE_X_FORWARDED_HOST": service != "gateway",
        "SECURE_PROXY_SSL_HEADER": (
            ("HTTP_X_FORWARDED_PROTO", "https") if service != "gateway" else None
        ),
        "REST_FRAMEWORK": {
            "DEFAULT_AUTHENTICATION_CLASSES": ["common.context.SignedContextAuthentication"],
            "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
            "DEFAULT_RENDERER_CLASSES": [
                "rest_framework.renderers.JSONRenderer",
                "rest_framework.renderers.BrowsableAPIRenderer",
            ],
            "DEFAULT_PARSER_CLASSES": [
                # DRF's JSONParser with a nesting limit: a deep body is a 400, not a 500.
                "common.parsers.DepthLimitedJSONParser",
                "rest_framework.parsers.FormParser",
                "rest_framework.parsers.MultiPartParser",
            ],
            "EXCEPTION_HANDLER": "common.errors.exception_handler",
            "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
            "DEFAULT_VERSIONING_CLASS": None,
        },
        "SPECTACULAR_SETTINGS": {
            "TITLE": f"{service} service",
            "VERSION": "1.0.0",
            "SERVE_INCLUDE_SCHEMA": False,
            "COMPONENT_SPLIT_REQUEST": True,
            "SWAGGER_UI_DIST": "SIDECAR",
            "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
            "REDOC_DIST": "SIDECAR",
        },
        "LOGGING": logging_config(
            service=service, level=env_str("LOG_LEVEL", "INFO"), fmt=log_format
        ),
        "HEALTH_CHECKS": (
            ["common.health.check_database", "common.health.check_cache"]
            if orm
            else ["common.health.check_cache"]
        ),
        "PROMETHEUS_METRIC_NAMESPACE": "",
        "SILENCED_SYSTEM_CHECKS": [],
    }
