"""Settings of the gateway service: shared defaults from `common`, then its own."""

import ipaddress
from pathlib import Path

from corsheaders.defaults import default_headers
from django.core.exceptions import ImproperlyConfigured

from common.settings import defaults, env_bool, env_float, env_int, env_list, env_str, required

BASE_DIR = Path(__file__).resolve().parent.parent

globals().update(
    defaults(service="gateway", base_dir=BASE_DIR, project="gateway_project", orm=False)
)

INSTALLED_APPS += ["corsheaders", "proxy"]  # type: ignore[name-defined]  # noqa: F821
# The merged public API docs (Swagger UI / ReDoc assets from the sidecar, served locally).
INSTALLED_APPS += ["apidocs"]  # type: ignore[name-defined]
# Browser sign-in for the browsable API (cookie + CSRF, HTML only): see browser/__init__.py.
INSTALLED_APPS += ["browser"]  # type: ignore[name-defined]
# Benchmark-only endpoints (GET /bench/floor): bench/gateway.py sets it for its runs, never on
# by default.
GATEWAY_BENCH_ENDPOINTS = env_bool("GATEWAY_BENCH_ENDPOINTS", False)
if GATEWAY_BENCH_ENDPOINTS:
    INSTALLED_APPS += ["gateway_bench"]  # type: ignore[name-defined]
MIDDLEWARE.append("django.middleware.csrf.CsrfViewMiddleware")  # type: ignore[name-defined]  # noqa: F821
# true when browsers reach the gateway over HTTPS (cookies get Secure; automatic on is_secure())
BROWSER_COOKIE_SECURE = env_bool("BROWSER_COOKIE_SECURE", False)
# Own name: the services' csrftoken cookies (analysis admin) must never overwrite the gateway's.
CSRF_COOKIE_NAME = "gateway_csrftoken"
CSRF_COOKIE_HTTPONLY = True  # the token reaches pages in the HTML, never through JavaScript
CSRF_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SECURE = BROWSER_COOKIE_SECURE
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# common's Content-Length check, counted in the gateway's rejection metric.
MIDDLEWARE[  # type: ignore[name-defined]  # noqa: F821
    MIDDLEWARE.index("common.request_id.BodySizeLimitMiddleware")  # type: ignore[name-defined]  # noqa: F821
] = "proxy.middleware.CountingBodySizeLimitMiddleware"
# /metrics only for METRICS_ALLOWED_NETWORKS (others: 404), before anything else answers it.
MIDDLEWARE.insert(  # type: ignore[name-defined]  # noqa: F821
    MIDDLEWARE.index("common.request_id.RequestIDMiddleware") + 1,  # type: ignore[name-defined]  # noqa: F821
    "proxy.middleware.MetricsAllowListMiddleware",
)
# Who may scrape the gateway's /metrics: loopback and the private ranges (Prometheus on the
# Compose network, the launcher), by the client address the gateway resolves.
METRICS_ALLOWED_NETWORKS = env_list(
    "METRICS_ALLOWED_NETWORKS",
    ["127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"],
)
for _network in METRICS_ALLOWED_NETWORKS:
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError as _exc:
        raise ImproperlyConfigured(
            f"METRICS_ALLOWED_NETWORKS: {_network!r} is no IP network ({_exc})"
        ) from None
# CORS answers (and preflights) come before anything that could refuse the request.
MIDDLEWARE.insert(  # type: ignore[name-defined]  # noqa: F821
    MIDDLEWARE.index("common.request_id.RequestIDMiddleware"),  # type: ignore[name-defined]  # noqa: F821
    "corsheaders.middleware.CorsMiddleware",
)
CORS_ALLOWED_ORIGINS = env_list("CORS_ALLOWED_ORIGINS", [])
CORS_ALLOW_HEADERS = (*default_headers, "x-request-id")
CORS_EXPOSE_HEADERS = ["X-Request-ID", "Retry-After", "Location"]

# The gateway keeps no data of its own: ready means its cache (revocations, rate limits) answers.
# A dead upstream must not make the gateway unready (its breaker answers 503 instead).
HEALTH_CHECKS = ["common.health.check_cache"]

# The breakers' state (proxy/upstreams.py); common.settings.cache() requires the same variable.
REDIS_URL = required("REDIS_URL", what="Redis (breaker state)")
CACHE_KEY_PREFIX = env_str("CACHE_KEY_PREFIX", "ms")


def _upstream(name: str, default_port: int) -> dict[str, object]:
    upper = name.upper()
    return {
        "url": env_str(f"{upper}_SERVICE_URL", f"http://127.0.0.1:{default_port}"),
        "connect_timeout": env_float(
            f"UPSTREAM_{upper}_CONNECT_TIMEOUT", env_float("UPSTREAM_CONNECT_TIMEOUT", 2.0)
        ),
        "read_timeout": env_float(
            f"UPSTREAM_{upper}_READ_TIMEOUT", env_float("UPSTREAM_READ_TIMEOUT", 10.0)
        ),
        # The service's own user-context key; empty: derived from INTERNAL_SECRET and the name.
        "context_key": env_str(f"{upper}_CONTEXT_KEY", ""),
    }


UPSTREAMS = {
    "auth": _upstream("auth", 3002),
    "playlist": _upstream("playlist", 3003),
    "analysis": _upstream("analysis", 3001),
}
# Connections kept alive per upstream and worker: at least the worker's thread count.
UPSTREAM_POOL_SIZE = env_int("UPSTREAM_POOL_SIZE", max(10, env_int("GUNICORN_THREADS", 4)))
# The bulkhead (proxy/breaker.py): calls in flight to one upstream per worker (0: no limit; by
# default one thread is always left to the other upstreams), and how long the oldest may run
# before a call over the limit is refused at once (503) instead of waiting for a slot.
UPSTREAM_MAX_IN_FLIGHT = env_int(
    "UPSTREAM_MAX_IN_FLIGHT", max(1, env_int("GUNICORN_THREADS", 4) - 1)
)
UPSTREAM_SLOW_SECONDS = env_float("UPSTREAM_SLOW_SECONDS", 1.0)
# Circuit breakers (proxy/breaker.py): an upstream's breaker opens when, over the last
# BREAKER_WINDOW_SECONDS, at least BREAKER_MIN_CALLS calls were made and at least
# BREAKER_FAILURE_RATE of them failed (connection error, timeout, 502/503/504; never a 500 or 4xx).
BREAKER_FAILURE_RATE = env_float("BREAKER_FAILURE_RATE", 0.5)
BREAKER_MIN_CALLS = env_int("BREAKER_MIN_CALLS", 20)
BREAKER_WINDOW_SECONDS = env_int("BREAKER_WINDOW_SECONDS", 10)
if not 0 < BREAKER_FAILURE_RATE <= 1 or BREAKER_MIN_CALLS < 1 or BREAKER_WINDOW_SECONDS < 1:
    raise ImproperlyConfigured(
        "BREAKER_FAILURE_RATE must be in (0, 1], BREAKER_MIN_CALLS and BREAKER_WINDOW_SECONDS "
        "at least 1"
    )
# Larger upstream answers are refused with 502 (logged), never buffered beyond this.
GATEWAY_MAX_UPSTREAM_BYTES = env_int("GATEWAY_MAX_UPSTREAM_BYTES", 8 * 1024 * 1024)
BREAKER_RESET_TIMEOUT = env_float("BREAKER_RESET_TIMEOUT", 30.0)
BREAKER_REDIS_TIMEOUT = env_float("BREAKER_REDIS_TIMEOUT", 0.5)

JWT_ISSUER = env_str("JWT_ISSUER", "musicstream-auth")
JWT_AUDIENCE = env_str("JWT_AUDIENCE", "musicstream")
JWT_LEEWAY_SECONDS = env_int("JWT_LEEWAY_SECONDS", 0)
JWKS_URL = env_str("JWKS_URL", f"{UPSTREAMS['auth']['url']}/api/auth/.well-known/jwks.json")
# auth's JWKS answers max-age=300: a key withdrawn there is refused here within 5 minutes.
JWKS_CACHE_SECONDS = env_float("JWKS_CACHE_SECONDS", 300.0)
JWKS_MIN_REFRESH_SECONDS = env_float("JWKS_MIN_REFRESH_SECONDS", 30.0)
# Verified access tokens remembered per worker (0 disables); see proxy/verified_tokens.py.
TOKEN_CACHE_SIZE = env_int("TOKEN_CACHE_SIZE", 4096)

GATEWAY_ANON_RATE = env_str("GATEWAY_ANON_RATE", "120/min")
GATEWAY_USER_RATE = env_str("GATEWAY_USER_RATE", "600/min")
REST_FRAMEWORK.update(  # type: ignore[name-defined]  # noqa: F821
    {
        # Never common's SignedContextAuthentication here: the gateway trusts no X-User from
        # clients. The proxy view brings its own JWT authentication.
        "DEFAULT_AUTHENTICATION_CLASSES": [],
        # Client IP for anonymous throttling: REMOTE_ADDR unless this many trusted proxies
        # stand in front of the gateway (then the matching X-Forwarded-For entry).
        "NUM_PROXIES": env_int("GATEWAY_NUM_PROXIES", 0),
    }
)
