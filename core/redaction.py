"""Secrets never leave the box: one home for redacting them.

``get_config`` answers, events and log lines that carry a camera source go
through here. Two kinds of secret: fields whose *name* says secret
(``password``, ``token``...) and the user:password part of URLs
(``rtsp://admin:pw@cam/...``), wherever a string carries one.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "***"

# Field names whose value is a secret wherever they appear in the config.
# ("pin" is a GPIO pin number here, not a PIN code.)
SECRET_NAMES = frozenset(
    {"password", "passwd", "secret", "token", "api_key", "private_key", "pin_hash"}
)
SECRET_SUFFIXES = ("_password", "_secret", "_token")

# scheme://userinfo@ ... The userinfo runs to the LAST '@' of the token, so a
# password holding an unescaped '@' or '/' (common on DVR/NVR setups) is
# masked whole rather than half-leaked.
_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^\s\"'<>]*@")


def redact_text(text: str) -> str:
    """Mask the user:password of every URL in ``text`` (``rtsp://***@host/...``)."""
    return _URL_USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)


def is_secret_name(name: str) -> bool:
    lowered = name.lower()
    return lowered in SECRET_NAMES or lowered.endswith(SECRET_SUFFIXES)


def redact_data(data: Any) -> Any:
    """A copy of JSON-like ``data`` with secret fields masked and URL credentials removed."""
    if isinstance(data, dict):
        return {
            key: (
                MASK
                if isinstance(key, str) and is_secret_name(key) and value is not None
                else redact_data(value)
            )
            for key, value in data.items()
        }
    if isinstance(data, list):
        return [redact_data(item) for item in data]
    if isinstance(data, str):
        return redact_text(data)
    return data
