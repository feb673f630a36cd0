"""Publish the outbox's pending events until SIGTERM/SIGINT (`up` runs it as a process)."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand
from django.db import connections

from accounts.outbox import build_relay

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Publish UserDeleted events left in the outbox (broker down at request time, process "
        "died) with publisher confirms; each row is removed only after the broker accepted it."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--once",
            action="store_true",
            help="publish what is pending now (no grace period) and exit",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["once"]:
            relay = build_relay(grace_seconds=0)
            published, state = relay.run_once()
            connections.close_all()
            self.stdout.write(f"published {published} event(s); {state}")
            return
        relay = build_relay()
        stop = threading.Event()

        def _stop(signum: int, frame: Any) -> None:
            logger.info("outbox relay stopping (signal %s)", signum)
            stop.set()
            relay.wake()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        logger.info(
            "outbox relay started",
            extra={"interval": relay.interval, "grace_seconds": relay.grace_seconds},
        )
        try:
            relay.run_forever(stop)
        finally:
            connections.close_all()
        logger.info("outbox relay stopped")
