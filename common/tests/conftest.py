"""`common` is tested without any project: a minimal settings.configure().

On the real servers of the test run, like every service: PostgreSQL (a database of this run,
made and dropped by pytest-django) and Redis (django-redis under the run's key prefix).
"""

import os

import django
from django.conf import settings

from common import settings as common_settings
from common.testing import run_id


def pytest_configure() -> None:
    if settings.configured:
        return
    settings.configure(
        DEBUG=False,
        SECRET_KEY="common-tests",
        INTERNAL_SECRET="common-tests-internal",
        SERVICE_NAME="common-tests",
        ALLOWED_HOSTS=["testserver"],
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "rest_framework",
        ],
        MIDDLEWARE=["common.request_id.RequestIDMiddleware"],
        ROOT_URLCONF="common.tests.urls",
        DATABASES={"default": _database()},
        CACHES={"default": _cache()},
        HEALTH_CHECKS=["common.health.check_database", "common.health.check_cache"],
        USE_TZ=True,
        REST_FRAMEWORK={
            "DEFAULT_AUTHENTICATION_CLASSES": ["common.context.SignedContextAuthentication"],
            "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
            "EXCEPTION_HANDLER": "common.errors.exception_handler",
        },
    )
    django.setup()


def _cache() -> dict:
    os.environ.setdefault("REDIS_URL", os.environ.get("TEST_REDIS_URL", ""))
    return common_settings.cache(service="common-tests")


def _database() -> dict:
    pg = os.environ.get("TEST_POSTGRES_URL")
    if not pg:  # settings must load; tests that need the database then fail or skip
        return {}
    os.environ["DATABASE_URL"] = f"{pg.rsplit('/', 1)[0]}/ms_common_{run_id()}"
    try:
        return common_settings.database(service="common-tests")
    finally:
        del os.environ["DATABASE_URL"]
