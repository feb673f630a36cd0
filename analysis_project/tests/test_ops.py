"""The operational endpoints answer."""

import pytest

from common.testing import assert_ops_endpoints_answer


@pytest.mark.django_db
def test_healthz_readyz_metrics_and_the_checks_of_readyz(client):
    assert_ops_endpoints_answer(client, checks={"database", "cache", "broker"})


@pytest.mark.django_db
def test_metrics_expose_the_analysis_series(client, api):
    api("m1").get("/api/analysis")
    text = client.get("/metrics").content.decode()
    for name in (
        "analysis_events_processed_total",
        "analysis_event_lag_seconds",
        'analysis_cache_requests_total{result="miss"}',
    ):
        assert name in text
