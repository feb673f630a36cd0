"""manage.py migrate_event_queues: make the event queues quorum queues with a delivery limit.

Run it once when upgrading from a release whose event queues were classic queues (RabbitMQ
refuses to redeclare a queue with another type), or after changing ``EVENT_DELIVERY_LIMIT``:
stop the analysis and playlist workers, run it, start the new workers. Publishers may keep
running: no event is lost (see common.events.migrate_queue). On the Redis broker there is
nothing to migrate.
"""

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from kombu import Connection

from common.events import EVENT_QUEUES, QueueMigrationError, migrate_queue


class Command(BaseCommand):
    help = "Migrate the event queues (analysis.events, playlist.events) to quorum queues."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--broker-url", default=None, help="default: CELERY_BROKER_URL")

    def handle(self, *args: Any, broker_url: str | None, **options: Any) -> None:
        url = broker_url or settings.CELERY_BROKER_URL
        if url.split("://", 1)[0] not in ("amqp", "amqps", "pyamqp"):
            self.stdout.write("the broker is not RabbitMQ: no queue to migrate")
            return
        with Connection(url, connect_timeout=settings.CELERY_BROKER_CONNECTION_TIMEOUT) as conn:
            for queue in EVENT_QUEUES:
                try:
                    moved = migrate_queue(conn, queue)
                except QueueMigrationError as exc:
                    raise CommandError(str(exc)) from exc
                self.stdout.write(f"{queue.name}: up to date, {moved} message(s) moved")
