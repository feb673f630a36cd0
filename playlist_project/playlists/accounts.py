"""Deleted accounts: once this service handled a user's UserDeleted event, that user's writes
are refused (401 ``account_deleted``), so nothing is written for an account that is gone.

The gateway already refuses every token of a deleted account (its per-user sessions mark); this
covers requests that passed the gateway before the deletion and were still on their way, and a
create racing with the deletion: the tombstone is written *before* the user's playlists are
deleted, and a create checks for it *after* its insert (and takes the insert back), so either
the create sees the tombstone or the deletion sees the playlist.
"""

from __future__ import annotations

from typing import Any

from pymongo.collection import Collection
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from playlists import db
from playlists.documents import DeletedUser
from playlists.exceptions import AccountDeleted
from playlists.outbox import utcnow


def _collection() -> Collection[dict[str, Any]]:
    db.connect()
    return DeletedUser._get_collection()


def account_deleted_mark(*, user_id: str) -> None:
    """Record that ``user_id`` is gone (idempotent: the first time is kept)."""
    _collection().update_one(
        {"_id": user_id}, {"$setOnInsert": {"deleted_at": utcnow()}}, upsert=True
    )


def account_is_deleted(*, user_id: str) -> bool:
    return _collection().find_one({"_id": user_id}, {"_id": 1}) is not None


def account_check(*, user_id: str) -> None:
    """``AccountDeleted`` (401) when ``user_id``'s account was deleted."""
    if account_is_deleted(user_id=user_id):
        raise AccountDeleted()


class AccountNotDeleted(BasePermission):
    """Writes (anything but GET, HEAD, OPTIONS) of a deleted account: 401 ``account_deleted``.
    Reads answer as usual (the account's playlists are gone)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if request.method in SAFE_METHODS or not getattr(user, "is_authenticated", False):
            return True
        account_check(user_id=str(user.id))
        return True
