"""factory_boy factories for playlists written straight to MongoDB (no events)."""

import factory
from factory.mongoengine import MongoEngineFactory

from playlists.documents import Playlist, Track
from playlists.outbox import utcnow


class TrackFactory(factory.Factory):
    class Meta:
        model = Track

    title = factory.Sequence(lambda n: f"Song {n}")
    artist = "Band"
    genre = "rock"
    duration_ms = 180000


class PlaylistFactory(MongoEngineFactory):
    class Meta:
        model = Playlist

    owner_id = "owner-1"
    name = factory.Sequence(lambda n: f"Playlist {n}")
    description = ""
    tracks = factory.LazyFunction(lambda: [TrackFactory(), TrackFactory(genre="jazz")])
    created_at = factory.LazyFunction(utcnow)
    updated_at = factory.LazyAttribute(lambda o: o.created_at)
