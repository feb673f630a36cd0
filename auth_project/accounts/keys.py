"""The RS256 signing key: loaded from JWT_PRIVATE_KEY or JWT_PRIVATE_KEY_FILE, its JWKS, its kid.

Only this service holds the private key; everyone else verifies with the public key it
publishes as a JWKS. The ``kid`` is the RFC 7638 thumbprint of the public key unless
JWT_KEY_ID names one, so a new key pair gets a new ``kid`` and verifiers refetch the JWKS.

Rotation (``manage.py rotate_jwt_key``, key file only): optionally first
``rotate_jwt_key --stage`` puts the next key in the JWKS (``<stem>.next.pem``) without signing
with it, so verifiers that cache the JWKS already know it when it starts signing; then a new key
(the staged one if any) replaces the file and signs from then on; the old key's public half is
kept beside it (``<stem>.previous-public.pem``) and stays in the JWKS, and keeps verifying tokens
here, until it is withdrawn
(``rotate_jwt_key --withdraw-previous``) or ``JWT_PREVIOUS_KEY_GRACE_SECONDS`` have passed since
the rotation (the file's modification time). With the key in JWT_PRIVATE_KEY, the previous public
key is JWT_PREVIOUS_PUBLIC_KEY (listed while set). Every process notices a rotation at its next
token: the key file is looked at (one ``stat``) on each use.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

logger = logging.getLogger(__name__)

ALGORITHM = "RS256"
KEY_BITS = 2048
MIN_KEY_BITS = 2048


@dataclass(frozen=True)
class SigningKey:
    """A private key with what is derived from it: public PEM, kid, public JWK."""

    private_pem: str
    public_pem: str
    kid: str
    jwk: dict[str, Any]


@dataclass(frozen=True)
class VerifyingKey:
    """A public key that verifies tokens: PEM, kid, public JWK."""

    public_pem: str
    kid: str
    jwk: dict[str, Any]


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def thumbprint(public_key: rsa.RSAPublicKey) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url) of an RSA public key."""
    numbers = public_key.public_numbers()
    members = {"e": _b64url_uint(numbers.e), "kty": "RSA", "n": _b64url_uint(numbers.n)}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()


def generate_private_pem(bits: int = KEY_BITS) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def write_private_key(path: Path, pem: str) -> None:
    """Create ``path`` holding ``pem``, owner-only (0600 from the start), all or nothing.

    The key is written to a temporary file first and linked into place, so a crash never
    leaves half a key behind and of two concurrent writers only one wins (FileExistsError).
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)  # whatever the umask was
        os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def build(private_pem: str, key_id: str = "") -> SigningKey:
    """Parse a PEM private key and derive the rest; ImproperlyConfigured if it is unusable."""
    try:
        key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            "The JWT private key (JWT_PRIVATE_KEY / JWT_PRIVATE_KEY_FILE) is not an unencrypted "
            f"PEM private key: {exc}"
        ) from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ImproperlyConfigured("The JWT private key must be an RSA key (RS256).")
    if key.key_size < MIN_KEY_BITS:
        raise ImproperlyConfigured(f"The JWT private key must have at least {MIN_KEY_BITS} bits.")
    public = key.public_key()
    public_pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    kid = key_id or thumbprint(public)
    return SigningKey(
        private_pem=private_pem, public_pem=public_pem, kid=kid, jwk=_jwk(public, kid)
    )


def _jwk(public: rsa.RSAPublicKey, kid: str) -> dict[str, Any]:
    numbers = public.public_numbers()
    return {
        "kty": "RSA",
        "use": "sig",
        "alg": ALGORITHM,
        "kid": kid,
        "n": _b64url_uint(numbers.n),
        "e": _b64url_uint(numbers.e),
    }


def build_public(public_pem: str) -> VerifyingKey:
    """Parse a PEM RSA public key (kid: its thumbprint); ImproperlyConfigured if unusable."""
    try:
        public = serialization.load_pem_public_key(public_pem.encode())
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            f"The previous JWT public key (JWT_PREVIOUS_PUBLIC_KEY or its file) is not PEM: {exc}"
        ) from exc
    if not isinstance(public, rsa.RSAPublicKey):
        raise ImproperlyConfigured("The previous JWT public key must be an RSA key (RS256).")
    kid = thumbprint(public)
    return VerifyingKey(public_pem=public_pem, kid=kid, jwk=_jwk(public, kid))


def ensure_key_file(path: Path) -> bool:
    """Create an RSA-2048 key at ``path`` unless one is there; True if it was created."""
    if path.exists():
        return False
    try:
        write_private_key(path, generate_private_pem())
    except FileExistsError:  # another process created it first: theirs is as good
        return False
    logger.info("generated a new JWT signing key", extra={"key_path": str(path)})
    return True


def replace_file(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (mode 600), replacing it atomically: readers see old or new."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def previous_key_path(path: Path) -> Path:
    """Where the public half of the key before ``path``'s current one is kept during a rotation."""
    return path.with_name(f"{path.stem}.previous-public.pem")


def _version(path: str) -> tuple[int, int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_ino, info.st_mtime_ns, info.st_size


@lru_cache(maxsize=8)
def _load(
    pem: str, path: str, key_id: str, debug: bool, version: tuple[int, int, int] | None = None
) -> SigningKey:
    # ``version`` (inode, mtime, size of the file) only makes a rotated file a new cache entry.
    if pem:
        return build(pem, key_id)
    file = Path(path)
    if not file.exists() and debug:
        ensure_key_file(file)
    try:
        text = file.read_text()
    except OSError as exc:
        raise ImproperlyConfigured(
            f"JWT_PRIVATE_KEY_FILE={path} cannot be read ({exc.strerror}). Run "
            "`manage.py ensure_jwt_keys` to create it, or set JWT_PRIVATE_KEY."
        ) from exc
    return build(text, key_id)


def signing_key() -> SigningKey:
    """The configured key (cached per configuration, so settings overrides take effect)."""
    pem, path = settings.JWT_PRIVATE_KEY, settings.JWT_PRIVATE_KEY_FILE
    version = None if pem else _version(path)
    return _load(pem, path, settings.JWT_KEY_ID, settings.DEBUG, version)


@lru_cache(maxsize=8)
def _load_public(pem: str) -> VerifyingKey:
    return build_public(pem)


def previous_key() -> VerifyingKey | None:
    """The key before the current one, while a rotation is in progress (see the module doc)."""
    if settings.JWT_PRIVATE_KEY:
        pem = getattr(settings, "JWT_PREVIOUS_PUBLIC_KEY", "")
        previous = _load_public(pem) if pem else None
    else:
        path = previous_key_path(Path(settings.JWT_PRIVATE_KEY_FILE))
        try:
            rotated_at = path.stat().st_mtime
            grace = float(getattr(settings, "JWT_PREVIOUS_KEY_GRACE_SECONDS", 0))
            if grace > 0 and time.time() - rotated_at > grace:
                return None  # withdrawn by the passing of time
            previous = _load_public(path.read_text())
        except FileNotFoundError:
            return None
    if previous is None or previous.kid == signing_key().kid:
        return None
    return previous


def next_key_path(path: Path) -> Path:
    """Where ``rotate_jwt_key --stage`` keeps the key the next rotation will make current."""
    return path.with_name(f"{path.stem}.next.pem")


@lru_cache(maxsize=8)
def _load_next(pem: str) -> VerifyingKey:
    key = build(pem)
    return VerifyingKey(public_pem=key.public_pem, kid=key.kid, jwk=key.jwk)


def next_key() -> VerifyingKey | None:
    """The staged next key (published, not yet signing), if any."""
    if settings.JWT_PRIVATE_KEY:
        return None
    try:
        pem = next_key_path(Path(settings.JWT_PRIVATE_KEY_FILE)).read_text()
    except FileNotFoundError:
        return None
    return _load_next(pem)


def published_keys() -> list[VerifyingKey | SigningKey]:
    """Current, staged next, previous: each once (by kid), the signing key first."""
    found: dict[str, VerifyingKey | SigningKey] = {}
    for key in (signing_key(), next_key(), previous_key()):
        if key is not None and key.kid not in found:
            found[key.kid] = key
    return list(found.values())


def verifying_keys() -> dict[str, str]:
    """Public PEM by kid of every key whose tokens are accepted (those the JWKS lists)."""
    return {key.kid: key.public_pem for key in published_keys()}


def jwks() -> dict[str, Any]:
    """The public JWK Set verifiers fetch: current, staged next, previous."""
    return {"keys": [key.jwk for key in published_keys()]}


def stage_next_key(path: Path) -> tuple[str, bool]:
    """Publish the key the next rotation will use; (its kid, whether it was created now)."""
    next_path = next_key_path(path)
    created = ensure_key_file(next_path)
    kid = build(next_path.read_text()).kid
    if created:
        logger.warning("next JWT signing key staged", extra={"next_kid": kid})
    return kid, created


@dataclass(frozen=True)
class Rotation:
    """What ``rotate_key_file`` did."""

    previous_kid: str
    current_kid: str
    dropped_kid: str | None


def rotate_key_file(path: Path) -> Rotation:
    """A new key in ``path`` (the staged next key if any); the old one's public half becomes
    the previous key.

    The previous file is written before the key file is replaced, so at no moment is a token
    signed with the old key unverifiable. A previous key still listed is dropped (only one).
    """
    old = build(path.read_text())
    previous_path = previous_key_path(path)
    next_path = next_key_path(path)
    dropped = None
    if previous_path.exists():
        dropped = build_public(previous_path.read_text()).kid
    replace_file(previous_path, old.public_pem)
    try:
        staged = next_path.read_text()
    except FileNotFoundError:
        staged = generate_private_pem()
    build(staged)  # refuse an unusable staged key before it replaces a good one
    replace_file(path, staged)
    next_path.unlink(missing_ok=True)
    new = build(path.read_text())
    logger.warning(
        "JWT signing key rotated",
        extra={"previous_kid": old.kid, "current_kid": new.kid, "dropped_kid": dropped},
    )
    return Rotation(previous_kid=old.kid, current_kid=new.kid, dropped_kid=dropped)


def withdraw_previous_key(path: Path) -> str | None:
    """Stop listing and accepting the previous key of ``path``; its kid, or None if none."""
    previous_path = previous_key_path(path)
    try:
        kid = build_public(previous_path.read_text()).kid
    except FileNotFoundError:
        return None
    previous_path.unlink(missing_ok=True)
    logger.warning("previous JWT signing key withdrawn", extra={"withdrawn_kid": kid})
    return kid
