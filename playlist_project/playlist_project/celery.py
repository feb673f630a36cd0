"""The playlist service's Celery app (UserDeleted consumer: ``celery -A playlist_project worker
-Q playlist.events``)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "playlist_project.settings")

from common.celery_utils import make_app

app = make_app("playlist_project")
