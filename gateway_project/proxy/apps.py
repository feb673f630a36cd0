"""Django app config of the gateway proxy."""

from django.apps import AppConfig


class ProxyConfig(AppConfig):
    """Registers the proxy app; upstream clients are built lazily on first use."""

    name = "proxy"
    verbose_name = "Gateway proxy"

    def ready(self) -> None:
        from proxy import upstreams  # noqa: F401  (connects the setting_changed reset)
