"""PIN hashing (scrypt) and a per-client login rate limiter."""

import hashlib
import hmac
import os
import time
from dataclasses import dataclass, field

_N, _R, _P = 2**14, 8, 1


def hash_pin(pin: str, salt: bytes | None = None) -> str:
    salt = salt or os.urandom(16)
    digest = hashlib.scrypt(pin.encode(), salt=salt, n=_N, r=_R, p=_P)
    return f"scrypt${salt.hex()}${digest.hex()}"


def verify_pin(pin: str, stored: str) -> bool:
    try:
        scheme, salt_hex, digest_hex = stored.split("$")
    except ValueError as exc:
        raise ValueError("console.pin_hash: expected 'scrypt$<salt>$<digest>'") from exc
    if scheme != "scrypt":
        raise ValueError(f"console.pin_hash: unknown scheme {scheme!r}")
    digest = hashlib.scrypt(pin.encode(), salt=bytes.fromhex(salt_hex), n=_N, r=_R, p=_P)
    return hmac.compare_digest(digest.hex(), digest_hex)


@dataclass
class LoginLimiter:
    """At most `attempts` failures per client within `window_s`; further tries are refused."""

    attempts: int = 5
    window_s: float = 300.0
    clock: object = time.monotonic
    _failures: dict[str, list[float]] = field(default_factory=dict)

    def blocked(self, client: str) -> bool:
        now = self.clock()
        recent = [t for t in self._failures.get(client, []) if now - t < self.window_s]
        self._failures[client] = recent
        return len(recent) >= self.attempts

    def failed(self, client: str) -> None:
        self._failures.setdefault(client, []).append(self.clock())

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)
