"""The gateway's own /metrics answers only METRICS_ALLOWED_NETWORKS (loopback and private ranges
by default); any other client gets the 404 of an unknown URL, and the services' /metrics are
never reachable through the proxy routes."""

from __future__ import annotations

import pytest
from django.test import override_settings

NOT_FOUND = {"detail": "Not found.", "code": "not_found"}


@pytest.mark.parametrize(
    "address", ["203.0.113.7", "8.8.8.8", "2001:db8::1", "::ffff:203.0.113.7", "172.32.0.1"]
)
@pytest.mark.parametrize("path", ["/metrics", "/metrics/"])
def test_a_public_client_gets_404(client, address, path):
    response = client.get(path, REMOTE_ADDR=address)
    assert response.status_code == 404
    assert response.json() == NOT_FOUND
    assert b"gateway_" not in response.content


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "::1", "10.1.2.3", "172.18.0.5", "192.168.1.20", "::ffff:172.18.0.5"],
)
def test_loopback_and_private_scrapers_get_the_metrics(client, address):
    response = client.get("/metrics", REMOTE_ADDR=address)
    assert response.status_code == 200
    assert b"gateway_rejected_requests_total" in response.content


def test_a_spoofed_forwarded_for_does_not_open_it(client):
    response = client.get("/metrics", REMOTE_ADDR="203.0.113.7", HTTP_X_FORWARDED_FOR="127.0.0.1")
    assert response.status_code == 404


@override_settings(REST_FRAMEWORK={"NUM_PROXIES": 1})
def test_behind_a_proxy_the_resolved_client_decides(client):
    from rest_framework.settings import api_settings

    api_settings.reload()
    try:
        outside = client.get(
            "/metrics", REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="127.0.0.1, 203.0.113.7"
        )
        assert outside.status_code == 404
        # Prometheus next to the balancer, no X-Forwarded-For: its own address.
        assert client.get("/metrics", REMOTE_ADDR="10.0.0.9").status_code == 200
    finally:
        api_settings.reload()


@override_settings(METRICS_ALLOWED_NETWORKS=["198.51.100.0/24"])
def test_the_list_is_configurable(client):
    assert client.get("/metrics", REMOTE_ADDR="198.51.100.4").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 404


def test_health_endpoints_stay_public(client):
    assert client.get("/healthz", REMOTE_ADDR="203.0.113.7").status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/api/../metrics",
        "/api/playlists/../../metrics",
        "/api/playlists/..%2f..%2fmetrics",
        "/api/analysis/%2e%2e/%2e%2e/metrics",
        "/api/auth/..%5c..%5cmetrics",
    ],
)
def test_the_services_metrics_are_not_reachable_through_the_proxy(fake, client, auth_headers, path):
    response = client.get(path, RAW_URI=path, REMOTE_ADDR="203.0.113.7", **auth_headers)
    assert response.status_code in (400, 404), path
    assert b"# HELP" not in response.content
    assert fake.requests == []
