"""Settings of the playlist service: shared defaults from `common`, then its own."""

from pathlib import Path

from common.events import PLAYLIST_QUEUE
from common.settings import (
    celery_settings,
    defaults,
    env_float,
    env_int,
    env_str,
    required,
)

BASE_DIR = Path(__file__).resolve().parent.parent

# Playlists live in MongoDB: no ORM data, no database (contenttypes/auth are never queried).
globals().update(
    defaults(service="playlist", base_dir=BASE_DIR, project="playlist_project", orm=False)
)
globals().update(celery_settings(service="playlist"))

INSTALLED_APPS += ["playlists"]  # type: ignore[name-defined]  # noqa: F821

MONGODB_URI = required("MONGODB_URI", what="a MongoDB server (the playlists)")
MONGODB_DB = env_str("MONGODB_DB", "playlist")
MONGODB_TIMEOUT_MS = env_int("MONGODB_TIMEOUT_MS", 2000)

PLAYLIST_MAX_TRACKS = env_int("PLAYLIST_MAX_TRACKS", 1000)
# Most live playlists one user may hold (a create beyond it answers 409 playlist_limit_reached).
PLAYLIST_MAX_PER_USER = env_int("PLAYLIST_MAX_PER_USER", 500)
# Byte budget of one list page: playlists (as JSON) are added while they fit, then the page
# ends early and `next` continues from the first one left out. A page always holds at least
# one playlist, so paging always advances.
PLAYLIST_LIST_MAX_BYTES = env_int("PLAYLIST_LIST_MAX_BYTES", 2 * 1024 * 1024)
# Cached GET answers are at most this big (as JSON); a bigger answer is built on every request.
PLAYLIST_CACHE_MAX_BYTES = env_int("PLAYLIST_CACHE_MAX_BYTES", 256 * 1024)
# Bytes of answers one user may store in the cache per cache lifetime (CACHE_TTL_SECONDS); past
# it their answers are built on every request, so many distinct pages cannot fill Redis.
PLAYLIST_CACHE_USER_MAX_BYTES = env_int("PLAYLIST_CACHE_USER_MAX_BYTES", 1024 * 1024)
# Bound on any one publish (connect, write, publisher confirm) so a dead or hanging broker
# never stalls the relay for long.
PLAYLIST_PUBLISH_TIMEOUT = env_float("PLAYLIST_PUBLISH_TIMEOUT", 3.0)
# The relay (`manage.py outbox_relay`) is the only publisher: it takes events at any age and
# scans the outbox this often, so a new event leaves within a fraction of a second.
PLAYLIST_RELAY_GRACE_SECONDS = env_float("PLAYLIST_RELAY_GRACE_SECONDS", 0.0)
PLAYLIST_RELAY_INTERVAL = env_float("PLAYLIST_RELAY_INTERVAL", 0.2)
PLAYLIST_RELAY_BATCH_SIZE = env_int("PLAYLIST_RELAY_BATCH_SIZE", 100)
# Events of one playlist's own changes (update, delete) that may wait in its document while
# the broker is down; one more change answers 503 outbox_full with nothing written. 1,000
# events are at most about 1.5 MB, so a playlist document stays far below MongoDB's 16 MB.
# Plays are not counted: they wait in the `outbox` collection (playlists/outbox.py).
PLAYLIST_OUTBOX_MAX_PER_PLAYLIST = env_int("PLAYLIST_OUTBOX_MAX_PER_PLAYLIST", 1000)
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
# common's error handler, plus MongoDB unreachable -> 503 + Retry-After.
REST_FRAMEWORK["EXCEPTION_HANDLER"] = "playlists.exceptions.exception_handler"  # type: ignore[name-defined]  # noqa: F821
SPECTACULAR_SETTINGS.update(  # type: ignore[name-defined]  # noqa: F821
    {
        "TITLE": "Playlist service",
        "DESCRIPTION": "Playlists of the signed-in user (served behind the gateway).",
    }
)
