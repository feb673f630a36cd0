"""Counters kept from events, and the record of the events already counted."""

from django.db import models

USER_ID_MAX_LENGTH = 64
GENRE_MAX_LENGTH = 100


class UserStats(models.Model):
    """One user's playlist and play counters.

    ``playlists_active`` is the exact signed sum of created minus deleted events, so it is
    right once every event has arrived in whatever order; readers clamp it at zero.
    """

    user_id = models.CharField(max_length=USER_ID_MAX_LENGTH, unique=True)
    playlists_created = models.BigIntegerField(default=0)
    playlists_deleted = models.BigIntegerField(default=0)
    playlists_active = models.BigIntegerField(default=0)
    plays = models.BigIntegerField(default=0)
    last_event_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "user stats"
        verbose_name_plural = "user stats"
        ordering = ("user_id",)

    def __str__(self) -> str:
        return f"stats of user {self.user_id}"


class UserGenrePlays(models.Model):
    """Plays of one genre by one user."""

    user_id = models.CharField(max_length=USER_ID_MAX_LENGTH)
    genre = models.CharField(max_length=GENRE_MAX_LENGTH)
    plays = models.BigIntegerField(default=0)

    class Meta:
        verbose_name = "user genre plays"
        verbose_name_plural = "user genre plays"
        constraints = [
            models.UniqueConstraint(fields=("user_id", "genre"), name="uniq_user_genre"),
        ]
        indexes = [models.Index(fields=("user_id", "-plays"), name="user_genre_plays_idx")]
        ordering = ("user_id", "-plays", "genre")

    def __str__(self) -> str:
        return f"{self.user_id}: {self.genre} ({self.plays})"


class GenrePlays(models.Model):
    """Plays of one genre over all users; kept when a user is deleted.

    ``users`` is how many users have a ``UserGenrePlays`` row for the genre (kept equal to
    that count by the same upserts): the global leaderboard shows a genre only once enough
    distinct users played it, so one user's free text never reaches everyone.
    """

    genre = models.CharField(max_length=GENRE_MAX_LENGTH, unique=True)
    plays = models.BigIntegerField(default=0)
    users = models.BigIntegerField(
        default=0, help_text="Users (not deleted) who played this genre."
    )

    class Meta:
        verbose_name = "genre plays (overall)"
        verbose_name_plural = "genre plays (overall)"
        indexes = [models.Index(fields=("-plays",), name="genre_plays_idx")]
        ordering = ("-plays", "genre")

    def __str__(self) -> str:
        return f"{self.genre} ({self.plays})"


class ProcessedEvent(models.Model):
    """An event already counted: its insert and the counter change commit together."""

    event_id = models.UUIDField(primary_key=True)
    type = models.CharField(max_length=32)
    user_id = models.CharField(max_length=USER_ID_MAX_LENGTH, db_index=True)
    occurred_at = models.DateTimeField()
    processed_at = models.DateTimeField()

    class Meta:
        ordering = ("-processed_at",)

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"


class DeletedUser(models.Model):
    """A user whose UserDeleted event was counted: later events of that user are recorded (so a
    redelivery stays a duplicate) but never counted, so nothing about the user comes back."""

    user_id = models.CharField(max_length=USER_ID_MAX_LENGTH, primary_key=True)
    deleted_at = models.DateTimeField()

    class Meta:
        ordering = ("-deleted_at",)

    def __str__(self) -> str:
        return f"deleted user {self.user_id}"
