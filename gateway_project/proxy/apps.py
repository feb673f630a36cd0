"""Django app config of the gateway proxy."""

from django.apps import AppConfig


class ProxyConfig(AppConfig):
    """Registers the proxy app; upstream clients are built lazily on first use."""

    name = "proxy"
    verbose_name = "Gateway proxy"

    def ready(self) -> None:
        from django.conf import settings

        from proxy import jwks, metrics, upstreams, verified_tokens  # noqa: F401  (setting_changed receivers)

        metrics.init_known_labels(list(settings.UPSTREAMS))
