"""/metrics for this service: the outbox gauges are measured at each scrape."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django_prometheus import exports

from playlists import metrics


def metrics_view(request: HttpRequest) -> HttpResponse:
    metrics.refresh_outbox_gauges()
    return exports.ExportToDjangoView(request)
