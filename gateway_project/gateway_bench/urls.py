"""Routes of the benchmark-only endpoints (included under /bench/ when enabled)."""

from django.urls import path

from gateway_bench.views import FloorView

urlpatterns = [path("floor", FloorView.as_view(), name="bench-floor")]
