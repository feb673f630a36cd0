"""The operational endpoints answer."""

import pytest


@pytest.mark.django_db
def test_healthz_readyz_metrics(client):
    assert client.get("/healthz").json()["status"] == "ok"
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.content
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert b"django_http_responses_total_by_status_view_method_total" in metrics.content


@pytest.mark.django_db
def test_readyz_checks_database_cache_and_broker(client):
    checks = client.get("/readyz").json()["checks"]
    assert set(checks) == {"database", "cache", "broker"}
    assert all(check["ok"] for check in checks.values())


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
