"""DRF throttles of the gateway: anonymous callers per IP, authenticated callers per user.

Rates come from settings (``GATEWAY_ANON_RATE``, ``GATEWAY_USER_RATE``) at request time. If the
cache does not answer, the request is let through (logged): rate limiting is protection, not a
reason to turn a Redis outage into a gateway outage.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

logger = logging.getLogger(__name__)

_last_warning = 0.0


class _SafeRateThrottle(SimpleRateThrottle):
    setting_name = ""

    def get_rate(self) -> str | None:
        return getattr(settings, self.setting_name)

    def allow_request(self, request: Request, view: APIView) -> bool:
        global _last_warning
        try:
            return super().allow_request(request, view)
        except Exception as exc:
            if time.monotonic() - _last_warning > 10:
                _last_warning = time.monotonic()
                logger.warning("throttle cache unavailable, not throttling: %s", exc)
            return True


class GatewayAnonThrottle(_SafeRateThrottle):
    """Anonymous requests, per client IP (``REMOTE_ADDR`` unless ``NUM_PROXIES`` is set)."""

    scope = "gateway_anon"
    setting_name = "GATEWAY_ANON_RATE"

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        if request.user and request.user.is_authenticated:
            return None
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class GatewayUserThrottle(_SafeRateThrottle):
    """Authenticated requests, per user id."""

    scope = "gateway_user"
    setting_name = "GATEWAY_USER_RATE"

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        if not (request.user and request.user.is_authenticated):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}
