"""GPIO wiring as the config file states it: alarm inputs, outputs and the pin backend.

Beside the driver that uses it (drivers/gpio.py); agent/config.py composes it into
the whole config and adds the cross-section checks (an input's zone exists, no pin
is used twice).
"""

from __future__ import annotations

import unicodedata
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from shaobing.core.ascii_input import ASCII_BEFORE, ascii_fields
from shaobing.core.model import Identifier, Strict

# BCM numbering; GPIO 0/1 are the HAT EEPROM pins and stay reserved.
Pin = Annotated[int, ASCII_BEFORE, Field(ge=2, le=27, description="BCM GPIO number, 2..27")]


# The names installers use on site (a wiring sheet, a Chinese input method), accepted for
# the config's own words; NFKC first, so full-width ``ｐａｎｉｃ`` is ``panic``.
INPUT_KINDS = {
    "pir": ("红外", "红外探测器", "人体感应"),
    "door": ("门磁",),
    "panic": ("紧急按钮", "紧急按键", "报警按钮"),
    "tamper": ("防拆",),
    "reset": ("复位", "复位钥匙"),
}
OUTPUT_KINDS = {
    "siren": ("警号", "警笛"),
    "strobe": ("爆闪灯", "闪灯"),
    "relay": ("继电器",),
}


def _kind(value: Any, kinds: dict[str, tuple[str, ...]], what: str) -> Any:
    if not isinstance(value, str):
        return value
    typed = unicodedata.normalize("NFKC", value).strip()
    for kind, names in kinds.items():
        if typed.lower() == kind or typed in names:
            return kind
    listing = ", ".join(f"{kind} ({names[0]})" for kind, names in kinds.items())
    raise ValueError(f"{value!r} is not {what}: one of {listing}")


class InputConfig(Strict):
    id: Identifier
    pin: Pin
    kind: Literal["pir", "door", "panic", "tamper", "reset"] = Field(
        description="what the sensor is; reset: the key switch that acknowledges open alarms"
    )
    contact: Literal["NO", "NC"] = Field(
        description="NO: contact closes on alarm; NC: contact opens on alarm (tamper loops)"
    )
    pull: Literal["up", "down"] = Field(
        default="up", description="internal pull; 'up' means the contact switches to ground"
    )
    bounce_ms: int = Field(default=50, ge=0, le=2000, description="debounce time")
    zone: str = Field(description="id of the zone this sensor guards")

    _ascii = ascii_fields("zone")

    @field_validator("kind", mode="before")
    @classmethod
    def _kind(cls, v: Any) -> Any:
        return _kind(v, INPUT_KINDS, "a sensor kind")

    @field_validator("contact", mode="before")
    @classmethod
    def _contact(cls, v: Any) -> Any:
        # YAML 1.1 reads a bare NO as the boolean false; installers write NO.
        if v is False:
            return "NO"
        return v.upper() if isinstance(v, str) else v


class OutputConfig(Strict):
    id: Identifier
    pin: Pin
    kind: Literal["siren", "strobe", "relay"] = Field(description="what the output drives")
    active_high: bool = Field(default=True, description="False for active-low relay boards")

    @field_validator("kind", mode="before")
    @classmethod
    def _kind(cls, v: Any) -> Any:
        return _kind(v, OUTPUT_KINDS, "an output kind")


class GpioConfig(Strict):
    backend: Literal["auto", "lgpio", "rpigpio", "native", "mock"] = Field(
        default="auto", description="gpiozero pin factory; 'mock' is the simulator"
    )
    allow_mock: bool = Field(
        default=False,
        description="let `shaobing run` use the mock backend (tests only; reported in health)",
    )
