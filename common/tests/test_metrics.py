"""/metrics sums every process of a program (multiprocess mode) and adds its CPU and memory."""

import os
import subprocess
import sys

from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from common.metrics import ProcessTreeCollector, process_tree, registry

INCREMENT = (
    "from prometheus_client import Counter, Histogram;"
    "Counter('demo_jobs', 'jobs', ['kind']).labels('a').inc();"
    "Histogram('demo_seconds', 'secs').observe(0.2)"
)


def samples(text):
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_counters_from_several_processes_are_summed(tmp_path, monkeypatch):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for _ in range(3):
        subprocess.run([sys.executable, "-c", INCREMENT], env=env, check=True)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    body = Client().get("/metrics").content.decode()
    values = samples(body)
    assert values[("demo_jobs_total", (("kind", "a"),))] == 3
    assert values[("demo_seconds_count", ())] == 3
    assert values[("process_cpu_seconds_total", ())] > 0
    assert values[("process_resident_memory_bytes", ())] > 0


def test_without_multiprocess_dir_the_default_registry_serves(monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    from prometheus_client import REGISTRY

    assert registry() is REGISTRY


def test_process_tree_sums_children():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in process_tree(os.getpid())
        families = {f.name: f for f in ProcessTreeCollector(os.getpid()).collect()}
        assert families["process_tree_processes"].samples[0].value >= 2
        alone = {f.name: f for f in ProcessTreeCollector(child.pid).collect()}
        assert alone["process_tree_processes"].samples[0].value == 1
        assert (
            families["process_resident_memory_bytes"].samples[0].value
            > alone["process_resident_memory_bytes"].samples[0].value
        )
    finally:
        child.kill()
        child.wait()


LEAN = [
    "common.metrics.HttpMetricsMiddleware",
    "common.request_id.RequestIDMiddleware",
    "common.request_id.BodySizeLimitMiddleware",
]


def _value(name, **labels):
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


def _healthz_series():
    """The three dashboard series of GET /healthz, then one series nobody reads."""
    return (
        _value(
            "django_http_responses_total_by_status_view_method_total",
            status="200",
            view="healthz",
            method="GET",
        ),
        _value(
            "django_http_requests_total_by_view_transport_method_total",
            view="healthz",
            transport="http",
            method="GET",
        ),
        _value(
            "django_http_requests_latency_seconds_by_view_method_count",
            view="healthz",
            method="GET",
        ),
        _value("django_http_requests_total_by_method_total", method="GET"),
    )


def test_http_metrics_middleware_writes_the_dashboard_series_only(monkeypatch, settings):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    settings.MIDDLEWARE = LEAN
    before = _healthz_series()
    assert Client().get("/healthz").status_code == 200
    after = _healthz_series()
    assert after[:3] == (before[0] + 1, before[1] + 1, before[2] + 1)
    assert after[3] == before[3]  # the series nobody reads are not written


def test_http_metrics_middleware_counts_answers_of_later_middlewares(monkeypatch, settings):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    settings.MIDDLEWARE = LEAN
    labels = {"status": "413", "view": "<unnamed view>", "method": "POST"}
    before = _value("django_http_responses_total_by_status_view_method_total", **labels)
    response = Client().post(
        "/validate", data=b"{}", content_type="application/json", CONTENT_LENGTH="999999999"
    )
    assert response.status_code == 413
    after = _value("django_http_responses_total_by_status_view_method_total", **labels)
    assert after == before + 1
