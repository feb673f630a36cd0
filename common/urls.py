"""Operational URLs every service mounts at its root: /healthz, /readyz, /metrics."""

from django.urls import path

from common import health, metrics

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics_view, name="prometheus-django-metrics"),
]
