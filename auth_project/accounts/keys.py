"""The RS256 signing key: loaded from JWT_PRIVATE_KEY or JWT_PRIVATE_KEY_FILE, its JWKS, its kid.

Only this service holds the private key; everyone else verifies with the public key it
publishes as a JWKS. The ``kid`` is the RFC 7638 thumbprint of the public key unless
JWT_KEY_ID names one, so a new key pair gets a new ``kid`` and verifiers refetch the JWKS.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
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
    numbers = public.public_numbers()
    jwk = {
        "kty": "RSA",
        "use": "sig",
        "alg": ALGORITHM,
        "kid": kid,
        "n": _b64url_uint(numbers.n),
        "e": _b64url_uint(numbers.e),
    }
    return SigningKey(private_pem=private_pem, public_pem=public_pem, kid=kid, jwk=jwk)


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


@lru_cache(maxsize=8)
def _load(pem: str, path: str, key_id: str, debug: bool) -> SigningKey:
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
    return _load(
        settings.JWT_PRIVATE_KEY, settings.JWT_PRIVATE_KEY_FILE, settings.JWT_KEY_ID, settings.DEBUG
    )


def jwks() -> dict[str, Any]:
    """The public JWK Set verifiers fetch."""
    return {"keys": [signing_key().jwk]}
