"""/healthz says the process answers; /readyz runs the configured dependency checks."""

import pytest
from django.test import Client, override_settings


def test_healthz():
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "service": "common-tests"}


@pytest.mark.django_db
def test_readyz_ok_runs_each_check():
    body = Client().get("/readyz").json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "cache"}


def failing_check():
    raise ConnectionError("connection refused")


@override_settings(
    HEALTH_CHECKS=["common.health.check_cache", "common.tests.test_health.failing_check"]
)
def test_readyz_503_names_the_failing_dependency():
    response = Client().get("/readyz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["cache"]["ok"] is True
    assert checks["failing_check"]["ok"] is False
    assert "connection refused" in checks["failing_check"]["error"]


def test_readyz_checks_the_real_cache():
    """The suite's cache is the run's Redis: a write is read back through the health check."""
    from django.core.cache import caches

    from common.health import check_cache

    assert caches["default"].__class__.__name__ == "RedisCache"
    check_cache()
