"""Reads of the auth service."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User

from accounts.exceptions import UserGone


def user_get(*, user_id: str) -> User:
    """The active user with this id (the id the gateway vouched for); UserGone otherwise."""
    if not str(user_id).isdigit():
        raise UserGone()
    user = get_user_model().objects.filter(pk=int(user_id), is_active=True).first()
    if user is None:
        raise UserGone()
    return user


def username_taken(*, username: str, exclude_user_id: int | None = None) -> bool:
    """Case-insensitive: "Alice" and "alice" would be two people nobody can tell apart."""
    users = get_user_model().objects.filter(username__iexact=username)
    if exclude_user_id is not None:
        users = users.exclude(pk=exclude_user_id)
    return users.exists()
