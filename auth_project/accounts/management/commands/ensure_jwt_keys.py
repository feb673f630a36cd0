"""Create the RS256 key pair in JWT_PRIVATE_KEY_FILE if it is not there (first `up`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from accounts import keys


class Command(BaseCommand):
    help = (
        "Generate an RSA-2048 private key into JWT_PRIVATE_KEY_FILE (mode 600) unless it exists; "
        "print the key id. Does nothing to a key given as JWT_PRIVATE_KEY."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.JWT_PRIVATE_KEY:
            key = keys.build(settings.JWT_PRIVATE_KEY, settings.JWT_KEY_ID)
            self.stdout.write(f"JWT_PRIVATE_KEY is set; key id {key.kid}")
            return
        path = Path(settings.JWT_PRIVATE_KEY_FILE)
        try:
            created = keys.ensure_key_file(path)
            key = keys.build(path.read_text(), settings.JWT_KEY_ID)
        except OSError as exc:
            raise CommandError(f"cannot create or read {path}: {exc}") from exc
        state = "created" if created else "exists"
        self.stdout.write(f"JWT key {state}: {path} (key id {key.kid})")
