"""Django app config of the gateway's benchmark-only endpoints."""

from django.apps import AppConfig


class GatewayBenchConfig(AppConfig):
    name = "gateway_bench"
    verbose_name = "Gateway benchmark endpoints"
