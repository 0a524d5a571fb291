"""Installer input as typed with a Chinese input method, made safe for topics and schemas.

Full-width digits and ASCII punctuation (``１３０５``, ``＋``, ``，``, ``：``) are what an IME
produces by accident; NFKC maps them to their ASCII forms without changing meaning. Anything
still not ASCII afterwards (``К``, ``一``, a no-break space inside a code) is refused with the
exact character and its position, because ``re``'s ``\\d`` and pydantic patterns would otherwise
let some of it through to MQTT topic segments nobody subscribes to.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from pydantic import BeforeValidator, field_validator


def to_ascii(text: str) -> str:
    """NFKC-normalised, stripped ``text``; ValueError naming the first non-ASCII character."""
    normal = unicodedata.normalize("NFKC", text).strip()
    for position, char in enumerate(normal, start=1):
        if not char.isascii():
            name = unicodedata.name(char, f"U+{ord(char):04X}")
            raise ValueError(
                f"character {char!r} ({name}) at position {position} of {text!r} is not "
                "allowed here: use ASCII letters, digits and punctuation"
            )
    return normal


def _before(value: Any) -> Any:
    # Non-strings (YAML ints, floats, None) go on to the field's own type check unchanged.
    return to_ascii(value) if isinstance(value, str) else value


# Put in an ``Annotated[...]`` before the type's own constraints, or call from a validator.
ASCII_BEFORE = BeforeValidator(_before)
normalise = _before


def ascii_fields(*fields: str) -> Any:
    """A model's before-validator normalising ``fields`` (also each item of a list field)."""

    def _validate(cls: type, value: Any) -> Any:
        if isinstance(value, list):
            return [_before(item) for item in value]
        return _before(value)

    return field_validator(*fields, mode="before")(classmethod(_validate))
