"""The console's config section: where it listens, who may log in."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from shaobing.core.model import Strict

# Interfaces that face the 4G/WAN side on these boxes: the console never listens there.
WAN_INTERFACE = re.compile(r"^(ppp|wwan|usb|rmnet|ccmni|cdc-wdm)\d*$")


class ConsoleConfig(Strict):
    enabled: bool = Field(default=False, description="serve the commissioning console")
    listen: list[str] = Field(
        default_factory=lambda: ["127.0.0.1", "eth0", "wlan0"],
        min_length=1,
        max_length=8,
        description="IPv4 addresses or interface names to listen on (loopback and the LAN/AP "
        "side; 4G interfaces such as ppp0/wwan0/usb0 are refused); a missing interface is "
        "skipped",
    )
    port: int = Field(default=8080, ge=1, le=65535, description="TCP port")
    pin_hash: str | None = Field(
        default=None,
        pattern=r"^scrypt\$[0-9a-f]{32}\$[0-9a-f]{128}$",
        description="scrypt hash of the installer's PIN (`shaobing console pin`), set at "
        "provisioning",
    )
    session_timeout_s: float = Field(
        default=900.0, ge=60, le=86400, description="idle time after which a login lapses"
    )
    max_attempts: int = Field(
        default=5, ge=1, le=100, description="wrong PINs per client before it must wait"
    )
    lockout_s: float = Field(
        default=300.0, ge=10, le=86400, description="how long a client that guessed wrong waits"
    )
    frame_max_width: int = Field(
        default=640, ge=160, le=1920, description="live view frames are scaled down to this"
    )
    frame_interval_s: float = Field(
        default=0.5, ge=0.1, le=10, description="the page asks for a new frame at most this often"
    )
    language: Literal["zh-CN", "en"] = Field(
        default="zh-CN", description="default page language (each user may switch)"
    )

    @field_validator("listen")
    @classmethod
    def _no_wan(cls, names: list[str]) -> list[str]:
        wan = [n for n in names if WAN_INTERFACE.match(n)]
        if wan:
            raise ValueError(
                f"{', '.join(wan)}: a 4G/WAN interface; the console listens only on "
                "loopback and the LAN/AP side"
            )
        if any(n in ("0.0.0.0", "::", "*") for n in names):
            raise ValueError("listen on named interfaces or addresses, not on every interface")
        return names

    @model_validator(mode="after")
    def _pin(self) -> ConsoleConfig:
        if self.enabled and self.pin_hash is None:
            raise ValueError(
                "console.enabled needs console.pin_hash (run `shaobing console pin` to make one)"
            )
        return self
