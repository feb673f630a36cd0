"""X-Request-ID: kept when sane, generated otherwise, echoed, and on every log record."""

import logging

import pytest
from rest_framework.test import APIClient

from common.logging import ContextFilter
from common.request_id import HEADER, MAX_LENGTH, is_valid_request_id
from common.tests.test_context import headers_for


def test_caller_id_is_kept_and_echoed():
    response = APIClient().get("/whoami", HTTP_X_REQUEST_ID="abc-123", **headers_for())
    assert response[HEADER] == "abc-123"
    assert response.json()["request_id"] == "abc-123"


def test_missing_id_is_generated():
    response = APIClient().get("/whoami", **headers_for())
    assert is_valid_request_id(response[HEADER])
    assert len(response[HEADER]) == 32


@pytest.mark.parametrize(
    "bad",
    ["x" * (MAX_LENGTH + 1), "has space", "new\nline", 'quote"d', "semi;colon", "é"],
)
def test_insane_id_is_replaced(bad):
    response = APIClient().get("/whoami", HTTP_X_REQUEST_ID=bad, **headers_for())
    assert response[HEADER] != bad
    assert is_valid_request_id(response[HEADER])


def test_longest_sane_id_is_kept():
    value = "a" * MAX_LENGTH
    assert APIClient().get("/healthz", HTTP_X_REQUEST_ID=value)[HEADER] == value


def test_log_records_carry_request_and_user(caplog):
    logger = logging.getLogger("common.tests")
    context_filter = ContextFilter(service="common-tests")
    logger.addFilter(context_filter)
    try:
        with caplog.at_level(logging.INFO, logger="common.tests"):
            APIClient().get("/whoami", HTTP_X_REQUEST_ID="req-77", **headers_for())
    finally:
        logger.removeFilter(context_filter)
    record = next(r for r in caplog.records if r.getMessage() == "whoami called")
    assert record.request_id == "req-77"
    assert record.user_id == "42"
    assert record.service == "common-tests"


def test_body_over_the_limit_is_413_json(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "common.request_id.BodySizeLimitMiddleware"]
    response = APIClient().post("/validate", {"name": "x" * 200, "count": 1}, format="json")
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    small = APIClient().post("/validate", {"name": "ab", "count": 1}, format="json")
    assert small.status_code == 200
