"""Publish the playlist outbox's pending events until stopped (its own process, every mode).

``python playlist_project/manage.py outbox_relay``: the only publisher of the playlist
service's events. ``--once`` publishes what is pending now and exits.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from playlists.relay import build_relay

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Publish pending playlist events (transactional outbox relay)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--once",
            action="store_true",
            help="Publish what is pending now (no grace period), then exit.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["once"]:
            relay = build_relay(grace_seconds=0)
            total = 0
            while True:
                published, state = relay.run_once()
                total += published
                if state != "more":
                    break
            self.stdout.write(f"published {total} event(s); state: {state}")
            if state == "failed":
                raise SystemExit(1)
            return
        stop = threading.Event()

        def _stop(signum: int, _frame: object) -> None:
            logger.info("outbox relay stopping (signal %s)", signum)
            stop.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        if settings.PLAYLIST_RELAY_METRICS_PORT:
            from prometheus_client import start_http_server

            start_http_server(settings.PLAYLIST_RELAY_METRICS_PORT)
        relay = build_relay()
        logger.info(
            "outbox relay started",
            extra={"grace_seconds": relay.grace_seconds, "interval": relay.interval},
        )
        relay.run_forever(stop)
        logger.info("outbox relay stopped")
