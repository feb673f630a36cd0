"""The client address the gateway resolves and forwards (the gateway's half).

The services (auth's per-IP login limits) take the last X-Forwarded-For entry as the client: the
gateway sends exactly one entry, the address it resolved itself. With ``GATEWAY_NUM_PROXIES`` = 0
that is ``REMOTE_ADDR``; with n trusted proxies in front, the n-th entry from the right. A client
that writes its own X-Forwarded-For never picks its address.
"""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import override_settings

LOGIN = {"path": "/api/auth/login", "data": b"{}", "content_type": "application/json"}


def behind_proxies(count: int):
    return override_settings(REST_FRAMEWORK={**settings.REST_FRAMEWORK, "NUM_PROXIES": count})


def forwarded_for(fake) -> str:
    return fake.calls()[-1].headers["X-Forwarded-For"]


def test_direct_clients_are_their_remote_addr_whatever_they_claim(fake, client):
    with behind_proxies(0):
        client.post(**LOGIN, REMOTE_ADDR="192.0.2.10", HTTP_X_FORWARDED_FOR="203.0.113.66")
        assert forwarded_for(fake) == "192.0.2.10"
        client.post(**LOGIN, REMOTE_ADDR="192.0.2.10")
        assert forwarded_for(fake) == "192.0.2.10"


def test_behind_one_proxy_the_entry_it_appended_is_the_client(fake, client):
    """A load balancer (REMOTE_ADDR 10.0.0.5) appends the address it saw; whatever the client
    sent before it (a spoofed chain) is ignored."""
    with behind_proxies(1):
        client.post(**LOGIN, REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="198.51.100.20")
        assert forwarded_for(fake) == "198.51.100.20"
        spoofed = "203.0.113.66, 1.1.1.1, 198.51.100.21"
        client.post(**LOGIN, REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR=spoofed)
        assert forwarded_for(fake) == "198.51.100.21"
        # No header at all (a health check from the balancer itself): its own address.
        client.post(**LOGIN, REMOTE_ADDR="10.0.0.5")
        assert forwarded_for(fake) == "10.0.0.5"


@pytest.mark.parametrize("garbage", ["not-an-ip", "", " ", "198.51.100.1\r\nX-Evil: 1"])
def test_an_entry_that_is_no_address_falls_back_to_remote_addr(fake, client, garbage):
    with behind_proxies(1):
        client.post(**LOGIN, REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR=f"1.2.3.4, {garbage}")
        assert forwarded_for(fake) == "10.0.0.5"


@override_settings(GATEWAY_ANON_RATE="2/min")
def test_behind_a_proxy_each_client_keeps_its_own_budget(fake, client):
    """The gateway's own per-IP throttle uses the same resolved address as the services."""
    with behind_proxies(1):
        for _ in range(2):
            response = client.post(
                **LOGIN, REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="198.51.100.30"
            )
            assert response.status_code == 200
        # Same client, a spoofed prefix: still the same client, throttled.
        spoofed = client.post(
            **LOGIN, REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="9.9.9.9, 198.51.100.30"
        )
        assert spoofed.status_code == 429
        # Another client behind the same balancer is not affected.
        other = client.post(**LOGIN, REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="198.51.100.31")
        assert other.status_code == 200
        assert forwarded_for(fake) == "198.51.100.31"
