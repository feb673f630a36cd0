"""The auth service's own table: the transactional outbox of events not yet confirmed."""

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
