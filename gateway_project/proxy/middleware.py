"""The gateway's variant of common's body-size middleware: same 413, but counted."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from common.request_id import BodySizeLimitMiddleware
from proxy import metrics


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
