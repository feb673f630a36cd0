"""The MongoDB connection (MONGODB_URI, database MONGODB_DB), registered once per process."""

from __future__ import annotations

import threading

import mongoengine
from django.conf import settings

ALIAS = "default"

_lock = threading.Lock()
_connected = False


def connect() -> None:
    """Register the mongoengine connection once per process (lazy: nothing is dialled yet)."""
    global _connected
    with _lock:
        if _connected:
            return
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


def disconnect() -> None:
    """Close the connection; the next :func:`connect` opens a new one from the settings
    (a prefork child of the Celery worker, tests pointing at another server)."""
    global _connected
    with _lock:
        mongoengine.disconnect(ALIAS)
        _connected = False


def ping() -> None:
    """Raise unless the database answers."""
    connect()
    mongoengine.get_db(ALIAS).command("ping")
