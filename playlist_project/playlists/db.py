"""The MongoDB connection: a real server on MONGODB_URI, else mongomock in this process."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import mongoengine
from django.conf import settings

ALIAS = "default"

_lock = threading.Lock()
_connected = False
# mongomock applies an update as read-modify-write in Python, so two threads updating the same
# document could lose one change (a pushed event!). Under mongomock every write holds this
# lock; a real MongoDB applies each update_one atomically by itself and needs none.
_mock_write_lock = threading.RLock()


def is_mock() -> bool:
    return not settings.MONGODB_URI


def connect() -> None:
    """Register the mongoengine connection once per process (lazy: nothing is dialled yet)."""
    global _connected
    with _lock:
        if _connected:
            return
        if is_mock():
            import mongomock

            mongoengine.connect(
                db=settings.MONGODB_DB,
                alias=ALIAS,
                host="mongodb://localhost",
                mongo_client_class=mongomock.MongoClient,
                tz_aware=False,
                uuidRepresentation="standard",
            )
        else:
            mongoengine.connect(
                db=settings.MONGODB_DB,
                alias=ALIAS,
                host=settings.MONGODB_URI,
                serverSelectionTimeoutMS=settings.MONGODB_TIMEOUT_MS,
                connectTimeoutMS=settings.MONGODB_TIMEOUT_MS,
                socketTimeoutMS=max(settings.MONGODB_TIMEOUT_MS, 5000),
                uuidRepresentation="standard",
            )
        _connected = True


def reconnect() -> None:
    """Connect again from the current settings (tests switch between mongomock and MongoDB)."""
    global _connected
    from playlists.documents import Playlist

    with _lock:
        mongoengine.disconnect(ALIAS)
        _connected = False
    Playlist._collection = None
    connect()


@contextlib.contextmanager
def write_lock() -> Iterator[None]:
    """Serialise writes under mongomock; a no-op with a real MongoDB."""
    if is_mock():
        with _mock_write_lock:
            yield
    else:
        yield


def ping() -> None:
    """Raise unless the database answers."""
    connect()
    mongoengine.get_db(ALIAS).command("ping")
