"""``manage.py outbox_relay``: the only publisher of the playlist service's events (its own
process, every mode; common.outbox.RelayCommand)."""

from __future__ import annotations

from django.conf import settings

from common.outbox import Relay, RelayCommand
from playlists import relay


class Command(RelayCommand):
    help = "Publish pending playlist events (transactional outbox relay)."

    def build_relay(self, *, grace_seconds: float | None = None) -> Relay:
        return relay.build_relay(grace_seconds=grace_seconds)

    def metrics_port(self) -> int | None:
        return settings.PLAYLIST_RELAY_METRICS_PORT or None
