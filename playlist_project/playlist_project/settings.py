"""Settings of the playlist service: shared defaults from `common`, then its own."""

from pathlib import Path

from common.events import PLAYLIST_QUEUE
from common.settings import (
    celery_settings,
    defaults,
    env,
    env_bool,
    env_float,
    env_int,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent

globals().update(defaults(service="playlist", base_dir=BASE_DIR, project="playlist_project"))
globals().update(celery_settings(service="playlist"))

INSTALLED_APPS += ["playlists"]  # type: ignore[name-defined]  # noqa: F821

# Playlists live in MongoDB; no ORM model of our own. contenttypes/auth still want a database:
# an in-memory SQLite one costs nothing and needs no migrations on disk.
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}

# MongoDB: a real server when MONGODB_URI is set, else mongomock inside this process.
MONGODB_URI = env("MONGODB_URI")
MONGODB_DB = env_str("MONGODB_DB", "playlist")
MONGODB_TIMEOUT_MS = env_int("MONGODB_TIMEOUT_MS", 2000)

PLAYLIST_MAX_TRACKS = env_int("PLAYLIST_MAX_TRACKS", 1000)
# mongomock lives in one process: that process must also run the outbox relay and the
# UserDeleted consumer (threads). With a real MongoDB they run as their own processes.
PLAYLIST_INPROCESS_WORKERS = env_bool("PLAYLIST_INPROCESS_WORKERS", MONGODB_URI is None)
# Bound on any one publish (connect, write, publisher confirm) so a dead or hanging broker
# never stalls a relay thread for long.
PLAYLIST_PUBLISH_TIMEOUT = env_float("PLAYLIST_PUBLISH_TIMEOUT", 3.0)
# The relay leaves events younger than this to the process that wrote them (fewer duplicates).
PLAYLIST_RELAY_GRACE_SECONDS = env_float("PLAYLIST_RELAY_GRACE_SECONDS", 5.0)
PLAYLIST_RELAY_INTERVAL = env_float("PLAYLIST_RELAY_INTERVAL", 1.0)
PLAYLIST_RELAY_BATCH_SIZE = env_int("PLAYLIST_RELAY_BATCH_SIZE", 100)
# Optional port where `manage.py outbox_relay` serves its own /metrics (unset: none).
PLAYLIST_RELAY_METRICS_PORT = env_int("PLAYLIST_RELAY_METRICS_PORT", 0)

# The UserDeleted consumer (Celery worker `-Q playlist.events`) knows its queue and the DLQ.
CELERY_TASK_QUEUES = [PLAYLIST_QUEUE]
CELERY_TASK_DEFAULT_QUEUE = PLAYLIST_QUEUE.name

HEALTH_CHECKS = [
    "playlists.health.check_mongodb",
    "common.health.check_cache",
    "common.health.check_broker",
]

REST_FRAMEWORK["DEFAULT_PAGINATION_CLASS"] = "playlists.pagination.PlaylistPagination"  # type: ignore[name-defined]  # noqa: F821
SPECTACULAR_SETTINGS.update(  # type: ignore[name-defined]  # noqa: F821
    {
        "TITLE": "Playlist service",
        "DESCRIPTION": "Playlists of the signed-in user (served behind the gateway).",
    }
)
