"""``manage.py outbox_relay``: the auth outbox's relay process (common.outbox.RelayCommand)."""

from __future__ import annotations

from accounts import outbox
from common.outbox import Relay, RelayCommand


class Command(RelayCommand):
    help = (
        "Publish UserDeleted events left in the outbox (broker down at request time, process "
        "died) with publisher confirms; each row is removed only after the broker accepted it."
    )

    def build_relay(self, *, grace_seconds: float | None = None) -> Relay:
        return outbox.build_relay(grace_seconds=grace_seconds)
