"""The auth service's Celery app: it publishes UserDeleted (through the outbox relay)."""

import os

from common.celery_utils import make_app

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "auth_project.settings")

app = make_app("auth_project")
