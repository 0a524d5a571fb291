"""The county's signing keys: one machinery for commands and update bundles.

Ed25519 (RFC 8032) via ``cryptography``. The county holds the private key;
each box holds only the county's public key(s), so a box taken from a pole
cannot forge commands or bundles for its neighbours.

- Keys are PEM files (PKCS#8 private, SubjectPublicKeyInfo public), what
  ``openssl genpkey -algorithm ed25519`` and ``openssl pkey -pubout`` write.
- A signature is 64 bytes, carried as unpadded base64url (86 characters).
- A key is named by its ``key_id``: the first 16 hex digits of the SHA-256 of
  its raw 32-byte public key. Signed documents carry the ``kid`` so a box can
  hold the old and the new county key during a rotation.
- A private key file that others can read is refused (``KeyFileError``).

What is signed is always bytes; callers build them with ``canonical`` (sorted
keys, no whitespace, UTF-8 unescaped) so the signer and the checker agree.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SIGNATURE_CHARS = 86  # unpadded base64url of 64 bytes
KEY_ID_PATTERN = r"^[0-9a-f]{16}$"
SIGNATURE_PATTERN = r"^[A-Za-z0-9_-]{86}$"


class KeyFileError(ValueError):
    """A key file is missing, unreadable, of the wrong kind or too open."""


def canonical(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public: Ed25519PublicKey) -> str:
    return hashlib.sha256(_raw(public)).hexdigest()[:16]


@dataclass(frozen=True)
class PublicKey:
    kid: str
    key: Ed25519PublicKey

    def verify(self, data: bytes, signature: str) -> bool:
        try:
            raw = base64.urlsafe_b64decode(signature + "==")
        except (binascii.Error, ValueError):
            return False
        if len(raw) != 64:
            return False
        try:
            self.key.verify(raw, data)
        except InvalidSignature:
            return False
        return True

    def pem(self) -> bytes:
        return self.key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


@dataclass(frozen=True)
class PrivateKey:
    key: Ed25519PrivateKey

    @property
    def public(self) -> PublicKey:
        public = self.key.public_key()
        return PublicKey(key_id(public), public)

    @property
    def kid(self) -> str:
        return self.public.kid

    def sign(self, data: bytes) -> str:
        return base64.urlsafe_b64encode(self.key.sign(data)).rstrip(b"=").decode()

    def pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def generate() -> PrivateKey:
    return PrivateKey(Ed25519PrivateKey.generate())


def write_keypair(private_path: Path, public_path: Path) -> PrivateKey:
    """A new county key pair: private 0600 (created so), public 0644."""
    from shaobing.core.atomic import atomic_write

    key = generate()
    atomic_write(private_path, key.pem(), mode=0o600)
    atomic_write(public_path, key.public.pem(), mode=0o644)
    return key


def _read(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"{what} {path}: no such file") from None
    except OSError as exc:
        raise KeyFileError(f"{what} {path}: cannot read it ({exc.strerror})") from None


def check_owner_only(path: Path, what: str) -> None:
    mode = os.stat(path).st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"{what} {path} is readable by others (mode {stat.S_IMODE(mode):04o}); "
            f"run: chmod 600 {path}"
        )


def load_private(path: Path) -> PrivateKey:
    data = _read(path, "private key")
    check_owner_only(path, "private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"private key {path}: not a PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"private key {path}: not an Ed25519 key")
    return PrivateKey(key)


def load_public(path: Path) -> PublicKey:
    data = _read(path, "public key")
    return public_from_pem(data, str(path))


def public_from_pem(data: bytes, where: str = "<pem>") -> PublicKey:
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"public key {where}: not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"public key {where}: not an Ed25519 key")
    return PublicKey(key_id(key), key)


class Keyring:
    """The county public keys a box trusts, by key id."""

    def __init__(self, keys: list[PublicKey]):
        self._keys = {k.kid: k for k in keys}

    @classmethod
    def load(cls, paths: list[Path]) -> Keyring:
        return cls([load_public(p) for p in paths])

    @property
    def kids(self) -> list[str]:
        return sorted(self._keys)

    def __bool__(self) -> bool:
        return bool(self._keys)

    def verify(self, data: bytes, kid: str, signature: str) -> bool:
        key = self._keys.get(kid)
        return key is not None and key.verify(data, signature)
