"""Factories of event envelopes and counter rows."""

from __future__ import annotations

from typing import Any

import factory
from analysis.models import GenrePlays, UserGenrePlays, UserStats

from common.events import make_envelope


def envelope(event_type: str, user_id: str = "u1", **data: Any) -> dict[str, Any]:
    """A valid envelope of ``event_type`` for ``user_id`` with ``data``."""
    return make_envelope(event_type, user_id=user_id, data=data, request_id="req-test")


class UserStatsFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = UserStats

    user_id = factory.Sequence(lambda n: f"user-{n}")
    playlists_created = 3
    playlists_deleted = 1
    playlists_active = 2
    plays = 7


class UserGenrePlaysFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = UserGenrePlays

    user_id = factory.Sequence(lambda n: f"user-{n}")
    genre = "rock"
    plays = 4


class GenrePlaysFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = GenrePlays

    genre = factory.Sequence(lambda n: f"genre-{n}")
    plays = 5
