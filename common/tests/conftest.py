"""`common` is tested without any project: a minimal settings.configure()."""

import django
from django.conf import settings


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
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
        HEALTH_CHECKS=["common.health.check_database", "common.health.check_cache"],
        USE_TZ=True,
        REST_FRAMEWORK={
            "DEFAULT_AUTHENTICATION_CLASSES": ["common.context.SignedContextAuthentication"],
            "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
            "EXCEPTION_HANDLER": "common.errors.exception_handler",
        },
    )
    django.setup()
