"""Operational URLs every service mounts at its root: /healthz, /readyz, /metrics."""

from django.urls import path
from django_prometheus import exports

from common import health

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", exports.ExportToDjangoView, name="prometheus-django-metrics"),
]
