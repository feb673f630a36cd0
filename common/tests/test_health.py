"""/healthz says the process answers; /readyz runs the configured dependency checks."""

import io
import json
import logging
import logging.config

import pytest
from django.test import Client, override_settings

from common import health
from common.logging import logging_config


def test_healthz():
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "service": "common-tests"}


@pytest.mark.django_db
def test_readyz_ok_runs_each_check():
    body = Client().get("/readyz").json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "cache"}


@pytest.fixture
def json_log():
    """The service's JSON log lines, as configured by common.logging, into a string."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    config = logging_config(service="common-tests", level="INFO", fmt="json")
    stream = io.StringIO()
    config["handlers"]["console"]["stream"] = stream
    logging.config.dictConfig(config)
    yield stream
    root.handlers[:], root.level = saved


INTERNAL_DETAIL = "could not connect to db-7.internal.example:5432 as app_user"


def failing_check():
    raise ConnectionError(INTERNAL_DETAIL)


def slow_check():
    raise TimeoutError("redis-2.internal.example:6379 timed out after 2.0 s")


@override_settings(
    HEALTH_CHECKS=[
        "common.health.check_cache",
        "common.tests.test_health.failing_check",
        "common.tests.test_health.slow_check",
    ]
)
def test_readyz_503_names_the_failing_dependency_without_internal_detail(json_log):
    response = Client().get("/readyz", HTTP_X_REQUEST_ID="ready-1")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["cache"]["ok"] is True
    assert checks["failing_check"] == {
        "ok": False,
        "error": health.CHECK_FAILED,
        "duration_ms": checks["failing_check"]["duration_ms"],
    }
    assert checks["slow_check"]["error"] == health.CHECK_TIMED_OUT
    for leak in ("internal.example", "5432", "6379", "app_user", "Error"):
        assert leak not in response.content.decode()
    # The operator finds the detail in the service log, on a line with the request's id.
    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    (failed,) = [line for line in lines if "check failing_check failed" in line["message"]]
    assert INTERNAL_DETAIL in failed["message"]
    assert "ConnectionError" in failed["message"]
    assert "Traceback" in failed["exc_info"]
    assert failed["request_id"] == "ready-1"
    assert failed["level"] == "WARNING"


def test_readyz_checks_the_real_cache():
    """The suite's cache is the run's Redis: a write is read back through the health check."""
    from django.core.cache import caches

    from common.health import check_cache

    assert caches["default"].__class__.__name__ == "RedisCache"
    check_cache()
