"""Writes of the auth service: registration, login, tokens, profile changes, deletion."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import Any
from uuid import UUID

from django.contrib.auth import authenticate, get_user_model, password_validation
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.exceptions import ValidationError
from rest_framework_simplejwt.exceptions import TokenBackendError
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.utils import datetime_from_epoch

from accounts import outbox
from accounts.exceptions import (
    ERROR_INVALID_REFRESH,
    ERROR_NOTHING_TO_UPDATE,
    ERROR_USERNAME_TAKEN,
    ERROR_WRONG_PASSWORD,
    InvalidCredentials,
    InvalidRefreshToken,
    RefreshNotYours,
    UserGone,
)
from accounts.models import OutboxEvent
from accounts.selectors import user_get, username_taken
from accounts.tokens import RefreshToken, family_of, token_backend
from common.events import USER_DELETED, make_envelope

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TokenPair:
    """What register, login and refresh hand out."""

    access: str
    refresh: str
    user: User


def _pair_for(user: User, *, family: UUID | None = None) -> TokenPair:
    refresh = RefreshToken.for_user(user, family=family)
    return TokenPair(access=str(refresh.access_token), refresh=str(refresh), user=user)


def _validate_password(password: str, user: User, *, field: str = "password") -> None:
    try:
        password_validation.validate_password(password, user=user)
    except DjangoValidationError as exc:
        raise ValidationError({field: list(exc.messages)}) from exc


def _username_error() -> ValidationError:
    return ValidationError({"username": [ERROR_USERNAME_TAKEN]})


def user_register(*, username: str, password: str) -> TokenPair:
    """Create a user (Django's password validators apply) and sign it in."""
    user_model = get_user_model()
    user = user_model(username=username)
    _validate_password(password, user)
    if username_taken(username=username):
        raise _username_error()
    user.set_password(password)
    try:
        with transaction.atomic():
            user.save()
            pair = _pair_for(user)
    except IntegrityError as exc:  # a concurrent registration of the same name won the race
        raise _username_error() from exc
    logger.info("user registered", extra={"user_id": str(user.pk)})
    return pair


def user_login(*, username: str, password: str) -> TokenPair:
    """A token pair for valid credentials; InvalidCredentials otherwise, whatever was wrong.

    Django's ModelBackend runs the password hasher for unknown usernames too, so the answer
    takes as long for a name that does not exist as for a wrong password.
    """
    user = authenticate(username=username, password=password)
    if user is None:
        logger.info("login failed")
        raise InvalidCredentials()
    user.last_login = timezone.now()
    user.save(update_fields=["last_login"])
    pair = _pair_for(user)
    logger.info("user logged in", extra={"user_id": str(user.pk)})
    return pair


def _verified_refresh(raw: str) -> dict[str, Any]:
    """The claims of a refresh token with a valid signature, unexpired (blacklisted or not)."""
    try:
        payload = token_backend().decode(raw)  # signature, exp, iss, aud, required claims
    except TokenBackendError as exc:  # includes TokenBackendExpiredToken
        raise InvalidRefreshToken() from exc
    if payload["token_type"] != RefreshToken.token_type:
        raise InvalidRefreshToken()
    return payload


def refresh_family_revoke(*, family: UUID) -> int:
    """Blacklist every refresh token of one rotation chain not yet blacklisted; how many were."""
    pending = OutstandingToken.objects.filter(
        rotation__family=family, blacklistedtoken__isnull=True, expires_at__gt=timezone.now()
    )
    rows = [BlacklistedToken(token=token) for token in pending]
    BlacklistedToken.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


def token_refresh(*, refresh: str) -> TokenPair:
    """Rotate: the given refresh token is used up, a new pair of the same family is issued.

    Single use even under concurrency: blacklisting is a unique insert, so of two requests
    with the same token only one gets a new pair. A token presented again after it was used
    (or revoked) is taken as stolen: every token of its family is revoked, so whoever holds
    the newest one (the thief or the user) has to sign in again (OAuth 2.0 Security BCP,
    refresh token rotation). A client that sends the same refresh twice at once loses its
    session the same way.
    """
    payload = _verified_refresh(refresh)
    family = family_of(payload)
    try:
        user = user_get(user_id=payload["user_id"])
    except UserGone as exc:  # deleted or deactivated since the token was issued
        raise InvalidRefreshToken() from exc
    with transaction.atomic():
        outstanding, _ = OutstandingToken.objects.get_or_create(
            jti=payload["jti"],
            defaults={
                "user": user,
                "token": refresh,
                "created_at": timezone.now(),
                "expires_at": datetime_from_epoch(payload["exp"]),
            },
        )
        _, created = BlacklistedToken.objects.get_or_create(token=outstanding)
        if created:
            pair = _pair_for(user, family=family)
    if not created:
        revoked = refresh_family_revoke(family=family) if family else 0
        logger.warning(
            "refresh token reused: its family is revoked",
            extra={"user_id": str(user.pk), "refresh_tokens_revoked": revoked},
        )
        raise InvalidRefreshToken()
    logger.info("token refreshed", extra={"user_id": str(user.pk)})
    return pair


def user_logout(*, user_id: str, refresh: str) -> None:
    """Revoke the caller's refresh token (idempotent: a revoked token stays revoked)."""
    try:
        payload = token_backend().decode(refresh)  # signature, exp, iss, aud, claims
    except TokenBackendError as exc:  # includes TokenBackendExpiredToken
        raise ValidationError({"refresh": [ERROR_INVALID_REFRESH]}) from exc
    if payload["token_type"] != RefreshToken.token_type:
        raise ValidationError({"refresh": [ERROR_INVALID_REFRESH]})
    if str(payload["user_id"]) != str(user_id):
        raise RefreshNotYours()
    user = user_get(user_id=user_id)
    outstanding, _ = OutstandingToken.objects.get_or_create(
        jti=payload["jti"],
        defaults={
            "user": user,
            "token": refresh,
            "created_at": timezone.now(),
            "expires_at": datetime_from_epoch(payload["exp"]),
        },
    )
    BlacklistedToken.objects.get_or_create(token=outstanding)
    logger.info("user logged out", extra={"user_id": str(user_id)})


def user_logout_everywhere(*, user_id: str) -> int:
    """Revoke every refresh token of the caller (the gateway refuses their access tokens issued
    before this request); how many were revoked."""
    user = user_get(user_id=user_id)
    revoked = user_refresh_tokens_revoke(user=user)
    logger.info(
        "user logged out everywhere",
        extra={"user_id": str(user_id), "refresh_tokens_revoked": revoked},
    )
    return revoked


def _check_password(user: User, password: str) -> None:
    if not user.check_password(password):
        raise ValidationError({"current_password": [ERROR_WRONG_PASSWORD]})


def user_refresh_tokens_revoke(*, user: User) -> int:
    """Blacklist every refresh token of ``user`` not yet blacklisted; how many were."""
    pending = OutstandingToken.objects.filter(
        user=user, blacklistedtoken__isnull=True, expires_at__gt=timezone.now()
    )
    rows = [BlacklistedToken(token=token) for token in pending]
    BlacklistedToken.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


def user_update(
    *,
    user_id: str,
    current_password: str,
    username: str | None = None,
    password: str | None = None,
) -> User:
    """Change username and/or password; a new password revokes every refresh token."""
    if username is None and password is None:
        raise ValidationError({"non_field_errors": [ERROR_NOTHING_TO_UPDATE]})
    user = user_get(user_id=user_id)
    _check_password(user, current_password)
    if username is not None and username != user.username:
        if username_taken(username=username, exclude_user_id=user.pk):
            raise _username_error()
        user.username = username
    if password is not None:
        _validate_password(password, user)
        user.set_password(password)
    try:
        with transaction.atomic():
            user.save()
            revoked = user_refresh_tokens_revoke(user=user) if password is not None else 0
    except IntegrityError as exc:
        raise _username_error() from exc
    logger.info(
        "user updated",
        extra={
            "user_id": str(user.pk),
            "password_changed": password is not None,
            "refresh_tokens_revoked": revoked,
        },
    )
    return user


def user_delete(*, user_id: str, current_password: str, request_id: str = "") -> str:
    """Delete the user and record UserDeleted in the outbox, in one transaction.

    The event is handed to the relay only after commit, so the request never waits on the
    broker and a rolled-back deletion never publishes anything. Returns the event id.
    """
    checked = user_get(user_id=user_id)
    _check_password(checked, current_password)
    with transaction.atomic():
        user = get_user_model().objects.select_for_update().filter(pk=checked.pk).first()
        if user is None:  # a concurrent delete won
            raise UserGone()
        envelope = make_envelope(
            USER_DELETED,
            user_id=str(user.pk),
            data={"username": user.username},
            request_id=request_id,
        )
        user_refresh_tokens_revoke(user=user)
        user.delete()
        OutboxEvent.objects.create(event_id=envelope["event_id"], envelope=envelope)
        transaction.on_commit(partial(outbox.submit, envelope))
    logger.info(
        "user deleted", extra={"user_id": envelope["user_id"], "event_id": envelope["event_id"]}
    )
    return str(envelope["event_id"])
