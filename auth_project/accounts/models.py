"""The auth service's own tables: the outbox of events not yet confirmed, refresh-token families."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class OutboxEvent(models.Model):
    """An event envelope written in the same transaction as the change it describes.

    The relay deletes the row only after the broker confirmed the publish.
    """

    event_id = models.UUIDField(unique=True)
    envelope = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ("created_at", "id")

    def __str__(self) -> str:
        return f"{self.envelope.get('type', 'event')} {self.event_id}"


class RefreshTokenFamily(models.Model):
    """The rotation chain ("family") an outstanding refresh token belongs to.

    A login or registration starts a family; each refresh hands its family on to the new token
    (the ``fam`` claim). When a refresh token that was already used is presented again, every
    token of its family is blacklisted: the thief and the victim both have to sign in again.
    """

    token = models.OneToOneField(
        "token_blacklist.OutstandingToken", on_delete=models.CASCADE, related_name="rotation"
    )
    family = models.UUIDField(db_index=True)

    def __str__(self) -> str:
        return f"family {self.family}"
