"""Settings of the analysis service: shared defaults from `common`, then its own."""

from pathlib import Path

from common.events import ANALYSIS_DLQ, ANALYSIS_QUEUE
from common.settings import celery_settings, defaults, env_bool, env_int, env_list

BASE_DIR = Path(__file__).resolve().parent.parent

globals().update(defaults(service="analysis", base_dir=BASE_DIR, project="analysis_project"))
globals().update(celery_settings(service="analysis"))

# The analytics admin: the analysis database holds its (session-authenticated) users. The API
# stays on the gateway's signed user context (REST_FRAMEWORK defaults from common).
INSTALLED_APPS = [
    "analysis",  # first: its templates extend the admin's
    "django.contrib.admin",
    "django.contrib.sessions",
    "django.contrib.messages",
    *INSTALLED_APPS,  # type: ignore[name-defined]  # noqa: F821
]
# common's middleware (request ids, metrics, the body-size limit every service promises) plus
# what the admin needs: sessions before CommonMiddleware, the rest after it. Inserted, never
# replaced, so whatever common adds reaches this service too.
_COMMON = "django.middleware.common.CommonMiddleware"
MIDDLEWARE = [  # type: ignore[name-defined]
    *MIDDLEWARE[: MIDDLEWARE.index(_COMMON)],  # type: ignore[name-defined]  # noqa: F821
    "django.contrib.sessions.middleware.SessionMiddleware",
    *MIDDLEWARE[MIDDLEWARE.index(_COMMON) :],  # type: ignore[name-defined]  # noqa: F821
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
TEMPLATES[0]["OPTIONS"]["context_processors"] = [  # type: ignore[name-defined]  # noqa: F821
    "django.template.context_processors.request",
    "django.contrib.auth.context_processors.auth",
    "django.contrib.messages.context_processors.messages",
]
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
SESSION_COOKIE_HTTPONLY = True
# true when the admin is served over HTTPS (behind a TLS-terminating proxy)
SESSION_COOKIE_SECURE = env_bool("ADMIN_COOKIES_SECURE", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
HEALTH_CHECKS = [*HEALTH_CHECKS, "common.health.check_broker"]  # type: ignore[name-defined]  # noqa: F821

# Worker: consume analysis.events only; the dead-letter queue is declared so RabbitMQ has
# somewhere to put rejected messages (the worker does not consume it).
CELERY_TASK_QUEUES = [ANALYSIS_QUEUE, ANALYSIS_DLQ]
CELERY_TASK_DEFAULT_QUEUE = ANALYSIS_QUEUE.name
CELERY_WORKER_CONSUMER = "analysis_project.worker:DeadLetteringConsumer"
ANALYSIS_TASK_MAX_RETRIES = env_int("ANALYSIS_TASK_MAX_RETRIES", 5)
ANALYSIS_TASK_RETRY_BACKOFF = env_int("ANALYSIS_TASK_RETRY_BACKOFF", 2)
ANALYSIS_TASK_RETRY_BACKOFF_MAX = env_int("ANALYSIS_TASK_RETRY_BACKOFF_MAX", 60)
# Batched consumption (analysis.batching): up to ANALYSIS_BATCH_SIZE first deliveries counted in
# one transaction, flushed at the latest ANALYSIS_BATCH_WAIT_MS after the first one arrived;
# 1 processes every message on its own. The prefetch must exceed the batch size for batches
# to fill: by default twice the batch size per pool process.
ANALYSIS_BATCH_SIZE = max(1, env_int("ANALYSIS_BATCH_SIZE", 100))
ANALYSIS_BATCH_WAIT_MS = max(0, env_int("ANALYSIS_BATCH_WAIT_MS", 20))
CELERY_WORKER_PREFETCH_MULTIPLIER = env_int(
    "CELERY_WORKER_PREFETCH_MULTIPLIER", 2 * ANALYSIS_BATCH_SIZE if ANALYSIS_BATCH_SIZE > 1 else 1
)
# The global genre leaderboard shows a genre once this many distinct (not deleted) users played
# it: genres are free text, and one user's must never be shown to everyone.
ANALYSIS_GENRE_MIN_USERS = max(1, env_int("ANALYSIS_GENRE_MIN_USERS", 3))
ANALYSIS_WORKER_METRICS_PORT = env_int("ANALYSIS_WORKER_METRICS_PORT", 9101)
# Celery's Django fixup closes the database connection around every task unless this is set
# (then every DB_REUSE_MAX tasks): a new PostgreSQL connection per event cost ~10 ms. The
# worker instead does what Django does per request (analysis_project.worker): close the
# connection when unusable or older than CONN_MAX_AGE.
CELERY_DB_REUSE_MAX = env_int("CELERY_DB_REUSE_MAX", 1000)
