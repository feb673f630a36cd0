"""/healthz (the process answers) and /readyz (its dependencies answer)."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable

from django.conf import settings
from django.core.cache import cache
from django.db import connections
from django.http import HttpRequest, JsonResponse
from django.utils.module_loading import import_string
from django.views.decorators.http import require_GET

logger = logging.getLogger(__name__)

Check = Callable[[], None]
"""A readiness check returns None when its dependency answers and raises otherwise."""

# What /readyz says about a failed check: the answer may reach anyone who can call the
# service, so no exception text (hostnames, ports, users, driver messages); the service log
# has the detail, on a line with the request's id.
CHECK_FAILED = "unavailable"
CHECK_TIMED_OUT = "timeout"


def check_database() -> None:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT 1")


def check_cache() -> None:
    key = f"readyz:{uuid.uuid4().hex}"
    cache.set(key, "1", timeout=5)
    if cache.get(key) != "1":
        raise RuntimeError("cache did not return the value just written")
    cache.delete(key)


def check_broker() -> None:
    from kombu import Connection

    with Connection(
        settings.CELERY_BROKER_URL,
        transport_options=getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {}),
        connect_timeout=2,
    ) as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok", "service": settings.SERVICE_NAME})


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    results: dict[str, dict[str, object]] = {}
    ready = True
    for path in settings.HEALTH_CHECKS:
        name = path.rsplit(".", 1)[-1].removeprefix("check_")
        started = time.perf_counter()
        try:
            import_string(path)()
            results[name] = {"ok": True}
        except Exception as exc:
            ready = False
            reason = CHECK_TIMED_OUT if isinstance(exc, TimeoutError) else CHECK_FAILED
            results[name] = {"ok": False, "error": reason}
            logger.warning(
                "readiness check %s failed: %s: %s", name, type(exc).__name__, exc, exc_info=True
            )
        results[name]["duration_ms"] = round((time.perf_counter() - started) * 1000, 1)
    body = {
        "status": "ok" if ready else "unavailable",
        "service": settings.SERVICE_NAME,
        "checks": results,
    }
    return JsonResponse(body, status=200 if ready else 503)
