"""The settings helpers: every server is named by a variable; no in-process stand-in exists."""

import uuid

import pytest
from django.core.exceptions import ImproperlyConfigured

from common import settings as common_settings


@pytest.mark.parametrize(
    ("variable", "build"),
    [
        ("DATABASE_URL", lambda: common_settings.database(service="svc")),
        ("REDIS_URL", lambda: common_settings.cache(service="svc")),
        ("CELERY_BROKER_URL", lambda: common_settings.celery_settings(service="svc")),
    ],
)
def test_a_missing_server_url_stops_start_up_naming_the_variable(monkeypatch, variable, build):
    monkeypatch.delenv(variable, raising=False)
    with pytest.raises(ImproperlyConfigured) as excinfo:
        build()
    message = str(excinfo.value)
    assert variable in message
    assert "manage_all.py up" in message
    assert "infra/.env-sample" in message


def test_cache_is_django_redis_under_the_service_prefix(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("CACHE_KEY_PREFIX", "pfx")
    config = common_settings.cache(service="svc")
    assert config["BACKEND"] == "django_redis.cache.RedisCache"
    assert config["LOCATION"] == "redis://127.0.0.1:1/0"
    assert config["KEY_PREFIX"] == "pfx-svc"


def test_redis_broker_redelivers_after_a_visibility_timeout_longer_than_any_task(monkeypatch):
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:1/1")
    monkeypatch.setenv("CELERY_BROKER_KEY_PREFIX", "run-1-broker:")
    config = common_settings.celery_settings(service="svc")
    options = config["CELERY_BROKER_TRANSPORT_OPTIONS"]
    assert options["visibility_timeout"] > config["CELERY_TASK_TIME_LIMIT"]
    assert options["global_keyprefix"] == "run-1-broker:"
    assert "confirm_publish" not in options


def test_amqp_broker_confirms_publishes(monkeypatch):
    monkeypatch.setenv("CELERY_BROKER_URL", "amqp://guest:guest@127.0.0.1:1//")
    config = common_settings.celery_settings(service="svc")
    assert config["CELERY_BROKER_TRANSPORT_OPTIONS"] == {"confirm_publish": True}


def test_services_without_orm_data_have_no_database(monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("SECRET_KEY", "x")
    monkeypatch.setenv("INTERNAL_SECRET", "y")
    values = common_settings.defaults(
        service="svc", base_dir=common_settings.REPO_ROOT, project="svc_project", orm=False
    )
    assert values["DATABASES"] == {}
    assert "common.health.check_database" not in values["HEALTH_CHECKS"]


def test_database_waits_are_bounded_and_configurable(monkeypatch):
    monkeypatch.setenv(
        "DATABASE_URL", "postgres://u@127.0.0.1:5432/db?options=-c%20search_path%3Dx"
    )
    for name in ("DB_CONNECT_TIMEOUT", "DB_STATEMENT_TIMEOUT_MS", "DB_LOCK_TIMEOUT_MS"):
        monkeypatch.delenv(name, raising=False)
    options = common_settings.database(service="svc")["OPTIONS"]
    assert options["connect_timeout"] == 5
    assert options["options"] == (
        "-c search_path=x -c statement_timeout=30000 -c lock_timeout=5000"
    )
    monkeypatch.setenv("DB_CONNECT_TIMEOUT", "2")
    monkeypatch.setenv("DB_STATEMENT_TIMEOUT_MS", "0")
    monkeypatch.setenv("DB_LOCK_TIMEOUT_MS", "250")
    options = common_settings.database(service="svc")["OPTIONS"]
    assert options["connect_timeout"] == 2
    assert options["options"].endswith("-c statement_timeout=0 -c lock_timeout=250")


@pytest.mark.integration
def test_database_lock_wait_ends_at_the_lock_timeout(monkeypatch):
    """A row locked by another session: the wait ends with OperationalError (lock_timeout),
    on the real server with the options as built (issue 13, scenario 5)."""
    import psycopg

    from common.testing import server_url

    url = server_url("postgres")
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("DB_LOCK_TIMEOUT_MS", "200")
    config = common_settings.database(service="svc")
    table = f"lock_probe_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"CREATE TABLE {table} (n int)")
        try:
            with psycopg.connect(url) as holder:
                holder.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
                with (
                    psycopg.connect(url, **config["OPTIONS"]) as waiter,
                    pytest.raises(psycopg.errors.LockNotAvailable),
                ):
                    waiter.execute(f"SELECT * FROM {table}")
                holder.rollback()
        finally:
            admin.execute(f"DROP TABLE {table}")
