"""The gateway's own middleware: common's body-size check, counted; ``/metrics`` for
allowed networks only."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from common.errors import json_404
from common.request_id import BodySizeLimitMiddleware
from proxy import metrics
from proxy.services import client_address

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class CountingBodySizeLimitMiddleware(BodySizeLimitMiddleware):
    """common's ``Content-Length`` check, adding to ``gateway_rejected_requests_total``.

    Bodies without a ``Content-Length`` (chunked) are measured while the proxy view reads them
    (``proxy.services.request_body_read``), never past the limit.
    """

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = super().__call__(request)
        if response.status_code == 413 and not getattr(response, "_gateway_counted", False):
            metrics.rejected_requests.labels(reason="payload_too_large").inc()
        return response


@functools.lru_cache(maxsize=8)
def _networks(spec: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in spec)


def metrics_allowed(address: str) -> bool:
    """True when ``address`` is inside one of ``METRICS_ALLOWED_NETWORKS``."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:10.0.0.5 from a dual-stack listener
    return any(ip in network for network in _networks(tuple(settings.METRICS_ALLOWED_NETWORKS)))


class MetricsAllowListMiddleware:
    """The gateway's ``/metrics`` answers only clients in ``METRICS_ALLOWED_NETWORKS`` (loopback
    and the private ranges by default: Prometheus in Compose, the launcher); anyone else gets
    the same 404 as for an unknown URL. The client is the address the gateway resolves itself
    (``REMOTE_ADDR``, or behind ``GATEWAY_NUM_PROXIES`` trusted proxies the entry they added)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info.rstrip("/") == "/metrics" and not metrics_allowed(
            client_address(request=request)
        ):
            return json_404(request)
        return self.get_response(request)
