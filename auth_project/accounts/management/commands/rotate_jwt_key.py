"""Rotate the RS256 signing key in JWT_PRIVATE_KEY_FILE, or withdraw the previous key."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts import keys

ENV_KEY_ADVICE = (
    "JWT_PRIVATE_KEY is set, so the key lives in the environment, not in a file this command "
    "can rotate. Rotate by hand: put the current key's public PEM in JWT_PREVIOUS_PUBLIC_KEY and "
    "a new private key in JWT_PRIVATE_KEY, restart auth; remove JWT_PREVIOUS_PUBLIC_KEY (and "
    "restart) to withdraw the old key."
)
KEY_ID_ADVICE = (
    "JWT_KEY_ID names the kid, so the new key would get the old key's kid and verifiers could "
    "not tell them apart. Unset JWT_KEY_ID (each key then gets its thumbprint as kid) first."
)


class Command(BaseCommand):
    help = (
        "Make a new RSA-2048 key in JWT_PRIVATE_KEY_FILE the signing key (the one --stage "
        "published earlier, if any); the old key stays in the JWKS (and keeps verifying tokens) "
        "until --withdraw-previous or until JWT_PREVIOUS_KEY_GRACE_SECONDS have passed. "
        "--stage publishes the next key in the JWKS without signing with it. --status shows "
        "the keys."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        group = parser.add_mutually_exclusive_group()
        group.add_argument(
            "--withdraw-previous",
            action="store_true",
            help="do not rotate: remove the previous key from the JWKS and stop accepting it",
        )
        group.add_argument(
            "--stage",
            action="store_true",
            help="publish the next key in the JWKS now, sign with it at the next rotation",
        )
        group.add_argument("--status", action="store_true", help="show the keys, change nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.JWT_PRIVATE_KEY:
            if options["status"]:
                self._status()
                return
            raise CommandError(ENV_KEY_ADVICE)
        path = Path(settings.JWT_PRIVATE_KEY_FILE)
        try:
            if options["status"]:
                self._status()
            elif options["stage"]:
                kid, created = keys.stage_next_key(path)
                state = "staged" if created else "already staged"
                self.stdout.write(
                    f"next key {kid} {state}: in the JWKS, not signing; run rotate_jwt_key once "
                    "every verifier has refreshed its JWKS"
                )
            elif options["withdraw_previous"]:
                kid = keys.withdraw_previous_key(path)
                if kid is None:
                    self.stdout.write("no previous key to withdraw")
                else:
                    self.stdout.write(
                        f"withdrew the previous key {kid}; the JWKS no longer lists it"
                    )
            else:
                if settings.JWT_KEY_ID:
                    raise CommandError(KEY_ID_ADVICE)
                if not path.exists():
                    raise CommandError(f"{path} does not exist: run ensure_jwt_keys first")
                rotation = keys.rotate_key_file(path)
                if rotation.dropped_kid:
                    self.stdout.write(f"dropped the older previous key {rotation.dropped_kid}")
                self.stdout.write(
                    f"new signing key {rotation.current_kid}; previous key "
                    f"{rotation.previous_kid} stays in the JWKS until "
                    f"`rotate_jwt_key --withdraw-previous` or {self._grace()}"
                )
        except OSError as exc:
            raise CommandError(f"cannot rotate the key in {path}: {exc}") from exc

    def _grace(self) -> str:
        grace = settings.JWT_PREVIOUS_KEY_GRACE_SECONDS
        return f"{grace} s from now" if grace > 0 else "never by itself (grace 0)"

    def _status(self) -> None:
        self.stdout.write(f"current key {keys.signing_key().kid}")
        staged = keys.next_key()
        if staged is not None:
            self.stdout.write(f"next key {staged.kid} (staged, not signing)")
        previous = keys.previous_key()
        if previous is None:
            self.stdout.write("no previous key")
            return
        line = f"previous key {previous.kid}"
        if not settings.JWT_PRIVATE_KEY and settings.JWT_PREVIOUS_KEY_GRACE_SECONDS > 0:
            path = keys.previous_key_path(Path(settings.JWT_PRIVATE_KEY_FILE))
            until = path.stat().st_mtime + settings.JWT_PREVIOUS_KEY_GRACE_SECONDS
            line += f", listed until {datetime.fromtimestamp(until, UTC).isoformat()}"
        self.stdout.write(line)
