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
def test_runs_on_postgresql():
    from django.db import connection

    assert connection.vendor == "postgresql"
