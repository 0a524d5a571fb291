"""Who may command a box: the signature policy and the county's signing helper.

Pure (no paho, no network): the agent's control channel checks with
``CommandVerifier``; ``shaobing sign-command``, a county's scripts and the
tests sign with ``signed_command``.

Two schemes, both over ``command_envelope.canonical`` (the body without
``sig``, plus ``cmd`` and ``device``, so a signature cannot be re-aimed):

- **Ed25519** (the default): ``kid`` names the county key (core/signing.py),
  ``sig`` is 86 characters of unpadded base64url. ``kid`` is inside the signed
  bytes. The box holds only the county's public key(s) (``control.command_keys``).
- **HMAC-SHA256** with a per-box shared key (``control.key_file``/``key_env``),
  the explicit alternative: no ``kid``, ``sig`` is 64 lowercase hex digits.

Unsigned commands are accepted only with ``control.insecure_unsigned: true``.
"""

from __future__ import annotations

import hmac
import time
import uuid
from dataclasses import dataclass
from typing import Any

from shaobing.agent.command_envelope import CommandError, Envelope, canonical
from shaobing.agent.command_envelope import sign as sign_hmac
from shaobing.core.signing import Keyring, PrivateKey


def sign_ed25519(body: dict[str, Any], command: str, device: str, key: PrivateKey) -> dict:
    """The body with ``kid`` and ``sig`` set (a new dict)."""
    signed = {k: v for k, v in body.items() if k not in ("sig", "kid")}
    signed["kid"] = key.kid
    signed["sig"] = key.sign(canonical(signed, command, device))
    return signed


def signed_command(
    key: PrivateKey,
    device: str,
    command: str,
    args: dict[str, Any] | None = None,
    *,
    ttl_s: float = 60.0,
    now_ms: int | None = None,
    command_id: str | None = None,
) -> dict[str, Any]:
    """A complete command as the county platform sends it, signed with ``key``."""
    issued = int(time.time() * 1000) if now_ms is None else now_ms
    body = {
        "v": 1,
        "id": command_id or f"c-{uuid.uuid4().hex[:24]}",
        "issued_ms": issued,
        "expires_ms": issued + int(ttl_s * 1000),
        "args": args or {},
    }
    return sign_ed25519(body, command, device, key)


@dataclass(frozen=True)
class CommandVerifier:
    """The box's side: which signatures it accepts (config ``control``)."""

    keyring: Keyring
    hmac_key: bytes | None
    insecure_unsigned: bool

    def check(self, body: dict[str, Any], command: str, device: str, envelope: Envelope) -> None:
        """Raises ``CommandError`` (``unsigned``, ``unknown_key``, ``bad_signature``)."""
        if envelope.sig is None:
            if envelope.kid is not None:
                raise CommandError("bad_signature", "kid without sig")
            if not self.insecure_unsigned:
                raise CommandError(
                    "unsigned", "this device accepts only signed commands (kid + sig)"
                )
            return
        data = canonical(body, command, device)
        if envelope.kid is not None:
            if envelope.kid not in self.keyring.kids:
                raise CommandError(
                    "unknown_key",
                    f"kid {envelope.kid} is not one of the device's command keys "
                    f"({', '.join(self.keyring.kids) or 'none configured'})",
                )
            if not self.keyring.verify(data, envelope.kid, envelope.sig):
                raise CommandError("bad_signature", f"signature does not match key {envelope.kid}")
            return
        if self.hmac_key is None:
            raise CommandError(
                "bad_signature",
                "an HMAC signature, but this device has no shared key: "
                "sign with the county's Ed25519 key (kid + sig)",
            )
        if not hmac.compare_digest(sign_hmac(body, command, device, self.hmac_key), envelope.sig):
            raise CommandError("bad_signature", "signature does not match")
