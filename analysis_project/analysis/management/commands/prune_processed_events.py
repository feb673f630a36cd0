"""manage.py prune_processed_events --days N: bound the table of processed event ids."""

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from analysis.services import processed_events_prune


class Command(BaseCommand):
    help = "Delete processed-event records older than --days (default 30)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, default=30)

    def handle(self, *args: Any, days: int, **options: Any) -> None:
        if days < 1:
            raise ValueError("--days must be at least 1")
        removed = processed_events_prune(older_than=timedelta(days=days))
        self.stdout.write(f"removed {removed} processed-event records older than {days} days")
