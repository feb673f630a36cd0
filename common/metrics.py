"""Prometheus helpers: one /metrics view that is right with one process or many.

With PROMETHEUS_MULTIPROC_DIR set (gunicorn with several workers, a Celery worker with its
pool), counters and histograms are summed over every process of the program by
prometheus_client's multiprocess collector. That collector has no process figures, so
:class:`ProcessTreeCollector` adds CPU and memory summed over the program's whole process
tree (the gunicorn master or Celery main process and its children), read from /proc.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from django.http import HttpRequest, HttpResponse
from django_prometheus.middleware import PrometheusAfterMiddleware
from django_prometheus.utils import Time, TimeSince
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

ROOT_PID_ENV = "METRICS_PROCESS_ROOT"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(child) for child in task.read_text().split()]
        except OSError:
            continue
    return found


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants that are still alive."""
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        if Path(f"/proc/{pid}").exists():
            pids.append(pid)
            todo += _children(pid)
    return pids


def _stat(pid: int) -> tuple[float, int] | None:
    """(CPU seconds, resident bytes) of one process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # Fields after the command name: state is index 0, utime 11, stime 12, rss 21.
    cpu = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    return cpu, int(fields[21]) * _PAGE_SIZE


class ProcessTreeCollector(Collector):
    """process_cpu_seconds_total and process_resident_memory_bytes over a process tree."""

    def __init__(self, root_pid: int | None = None) -> None:
        self.root_pid = root_pid

    def collect(self) -> Iterator[Metric]:
        root = self.root_pid or int(os.environ.get(ROOT_PID_ENV) or os.getpid())
        stats = [s for s in (_stat(pid) for pid in process_tree(root)) if s]
        cpu = CounterMetricFamily("process_cpu_seconds", "CPU seconds of every process.")
        cpu.add_metric([], sum(s[0] for s in stats))
        rss = GaugeMetricFamily(
            "process_resident_memory_bytes", "Resident memory of every process."
        )
        rss.add_metric([], float(sum(s[1] for s in stats)))
        count = GaugeMetricFamily("process_tree_processes", "Processes in the program's tree.")
        count.add_metric([], float(len(stats)))
        yield from (cpu, rss, count)


def registry() -> CollectorRegistry:
    """The registry /metrics should expose in this process."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    combined = CollectorRegistry()
    multiprocess.MultiProcessCollector(combined)
    combined.register(ProcessTreeCollector())
    return combined


def metrics_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)


class HttpMetricsMiddleware(PrometheusAfterMiddleware):
    """django-prometheus' request metrics, only the series the dashboards and alerts read.

    django-prometheus' Before/After pair writes about 16 values per request (totals before and
    after the middlewares, by method, by transport, body sizes, charset...), each a locked write
    to a memory-mapped file in multiprocess mode: about 10 % of a proxied request's CPU in the
    gateway (docs/performance.md). This one middleware, first in MIDDLEWARE so that answers
    made by other middlewares (413, CORS preflights) are counted too, writes four:

    - ``django_http_requests_total_by_view_transport_method_total`` (request rate panel),
    - ``django_http_responses_total_by_status_view_method_total`` (errors panel, 5xx alert),
    - ``django_http_requests_latency_seconds_by_view_method`` (histogram: latency panels),
    - and, on an exception, ``django_http_exceptions_total_by_type`` / ``_by_view``.
    """

    def process_request(self, request: HttpRequest) -> None:
        request.prometheus_after_middleware_event = Time()  # type: ignore[attr-defined]

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        method = self._method(request)
        view = self._get_view_name(request)
        self.label_metric(
            self.metrics.responses_by_status_view_method,
            request,
            response,
            status=str(response.status_code),
            view=view,
            method=method,
        ).inc()
        started = getattr(request, "prometheus_after_middleware_event", None)
        if started is None:
            self.label_metric(self.metrics.requests_unknown_latency, request, response).inc()
        else:
            self.label_metric(
                self.metrics.requests_latency_by_view_method,
                request,
                response,
                view=view,
                method=method,
            ).observe(TimeSince(started))
        return response
