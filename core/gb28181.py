"""GB/T 28181 alarm codes: what the county platform's video network already speaks.

Every ``alarm.*`` and ``fault.*`` event carries a top-level ``gb28181`` object
(docs/mqtt.md#gbt-28181-codes): ``method`` (报警方式, AlarmMethod), ``type``
(报警类型, AlarmType, ``null`` where the standard has no code for it),
``priority`` (报警级别, AlarmPriority 1..4, 1 most urgent) and, when the config
names them, the 20-digit ``device_id`` and ``channel_id`` (编码, GB/T 28181-2016
Annex D: digits 1-8 centre code, 9-10 industry, 11-13 type, 14 network, 15-20
serial number).

The defaults below are overridden per zone, source (input, camera, serial
device) and event type by ``gb28181.rules``; rules apply in order and each
sets only the fields it names, so a general rule goes first and a specific one
after it.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import Any

from pydantic import Field, field_validator, model_validator

from shaobing.core.model import Strict

# AlarmMethod (报警方式), GB/T 28181-2016 A.2.6.
PHONE, DEVICE, SMS, GPS, VIDEO, DEVICE_FAULT, OTHER = 1, 2, 3, 4, 5, 6, 7
# AlarmType codes the standard defines per method; other methods carry none.
ALARM_TYPES: dict[int, dict[int, str]] = {
    DEVICE: {
        1: "video loss",
        2: "tamper",
        3: "storage full",
        4: "high temperature",
        5: "low temperature",
    },
    VIDEO: {
        1: "manual",
        2: "motion",
        3: "left object",
        4: "removed object",
        5: "tripwire",
        6: "intrusion",
        7: "wrong way",
        8: "loitering",
        9: "flow count",
        10: "density",
        11: "video abnormal",
        12: "fast moving",
    },
    DEVICE_FAULT: {1: "storage disk fault", 2: "storage fan fault"},
}

# Type codes (digits 11-13 of an id) this agent's config may name.
DEVICE_TYPES = range(111, 131)  # front-end devices; 117 is an alarm controller (报警控制器)
INPUT_TYPE = 134  # alarm input device (报警输入设备)
OUTPUT_TYPE = 135  # alarm output device (报警输出设备)
CAMERA_TYPES = (131, 132)  # camera, network camera (IPC)


class Code(Strict):
    """One event's GB/T 28181 alarm code, as carried in ``Event.gb28181``."""

    method: int = Field(ge=1, le=7, description="AlarmMethod: 2 device, 5 video, 6 device fault")
    type: int | None = Field(default=None, ge=1, description="AlarmType within the method")
    priority: int = Field(ge=1, le=4, description="AlarmPriority: 1 most urgent .. 4")
    device_id: str | None = Field(default=None, description="20-digit id of this device")
    channel_id: str | None = Field(default=None, description="20-digit id of the source channel")


# event type -> (method, type, priority); camera sources use CAMERA_DEFAULTS first.
DEFAULTS: dict[str, tuple[int, int | None, int]] = {
    "alarm.panic": (DEVICE, None, 1),
    "alarm.duress": (DEVICE, None, 1),
    "alarm.fire": (DEVICE, None, 1),
    "alarm.medical": (DEVICE, None, 1),
    "alarm.intrusion": (DEVICE, None, 2),
    "alarm.perimeter": (DEVICE, None, 2),
    "alarm.tamper": (DEVICE, 2, 2),
    "alarm.tripwire": (VIDEO, 5, 2),
    "alarm.loitering": (VIDEO, 8, 3),
    "fault.camera": (DEVICE, 1, 3),  # video loss
    "fault.storage": (DEVICE_FAULT, 1, 2),
    "fault.cleared": (DEVICE_FAULT, None, 4),
    "fault.low_battery": (DEVICE_FAULT, None, 4),
}
CAMERA_DEFAULTS: dict[str, tuple[int, int | None, int]] = {
    "alarm.intrusion": (VIDEO, 6, 2),
    "alarm.perimeter": (VIDEO, 5, 2),
    "alarm.tamper": (VIDEO, 11, 2),
}
OTHER_ALARM = (DEVICE, None, 3)
OTHER_FAULT = (DEVICE_FAULT, None, 3)
CAMERA_ALARM = (VIDEO, None, 3)
RESTORE = ".restore"


def check_id(value: Any, types: range | tuple[int, ...] | None = None, what: str = "id") -> str:
    """A 20-digit GB/T 28181 id; full-width digits are taken as digits."""
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError(f'{what} must be quoted in YAML ("..."), or leading zeros are lost')
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string of 20 digits")
    text = unicodedata.normalize("NFKC", value).strip()
    for pos, ch in enumerate(text, 1):
        if not ("0" <= ch <= "9"):
            raise ValueError(
                f"{what} {value!r}: character {ch!r} (U+{ord(ch):04X}) at position {pos} "
                "is not a digit 0-9"
            )
    if len(text) != 20:
        raise ValueError(f"{what} {value!r} has {len(text)} digits; GB/T 28181 ids have 20")
    code = int(text[10:13])
    if types is not None and code not in types:
        allowed = (
            f"{types.start}..{types.stop - 1}"
            if isinstance(types, range)
            else " or ".join(map(str, types))
        )
        raise ValueError(
            f"{what} {text}: digits 11-13 are type code {code}, expected {allowed}"
            f" ({_TYPE_NAMES.get(types, 'see GB/T 28181 Annex D')})"
        )
    return text


_TYPE_NAMES = {
    DEVICE_TYPES: "a front-end device, e.g. 117 alarm controller",
    (INPUT_TYPE,): "134 alarm input",
    (OUTPUT_TYPE,): "135 alarm output",
    CAMERA_TYPES: "131 camera or 132 network camera",
}


def check_code(method: int | None, alarm_type: int | None) -> None:
    if method is None or alarm_type is None:
        return
    known = ALARM_TYPES.get(method)
    if known is None:
        raise ValueError(f"AlarmMethod {method} has no AlarmType codes; leave alarm_type out")
    if alarm_type not in known:
        codes = ", ".join(f"{k} {v}" for k, v in known.items())
        raise ValueError(f"AlarmType {alarm_type} is not defined for method {method} ({codes})")


class Gb28181RuleConfig(Strict):
    zone: str | None = Field(default=None, description="only events of this zone")
    source: str | None = Field(
        default=None, description="only events of this input, camera or serial device id"
    )
    event: str | None = Field(
        default=None,
        pattern=r"^(alarm|fault)(\.[a-z0-9_]+)+$",
        description="only this event type (its .restore too)",
    )
    method: int | None = Field(default=None, ge=1, le=7, description="AlarmMethod to set")
    alarm_type: int | None = Field(default=None, ge=1, description="AlarmType to set")
    priority: int | None = Field(default=None, ge=1, le=4, description="AlarmPriority to set")

    @model_validator(mode="after")
    def _sets_something(self) -> Gb28181RuleConfig:
        if self.method is None and self.alarm_type is None and self.priority is None:
            raise ValueError("a rule must set at least one of method, alarm_type, priority")
        if self.alarm_type is not None and self.method is None:
            raise ValueError("alarm_type needs method too: an AlarmType belongs to its method")
        check_code(self.method, self.alarm_type)
        return self

    def matches(self, event_type: str, source_id: str, zone: str | None) -> bool:
        return (
            (self.zone is None or self.zone == zone)
            and (self.source is None or self.source == source_id)
            and (self.event is None or self.event == event_type.removesuffix(RESTORE))
        )


class Gb28181Config(Strict):
    device_id: str | None = Field(
        default=None,
        description="20-digit GB/T 28181 id of this box (type code 111..130, e.g. 117)",
    )
    channels: dict[str, str] = Field(
        default_factory=dict,
        description="input/serial device id -> 134 id, camera id -> 132 id, output id -> 135 id",
    )
    rules: list[Gb28181RuleConfig] = Field(
        default_factory=list, description="per zone/source/event overrides, applied in order"
    )

    @field_validator("device_id", mode="before")
    @classmethod
    def _device(cls, v: Any) -> Any:
        return None if v is None else check_id(v, DEVICE_TYPES, "device_id")

    @field_validator("channels", mode="before")
    @classmethod
    def _channels(cls, v: Any) -> Any:
        if not isinstance(v, Mapping):
            return v
        # Digits only here; which type code fits which source is checked in cross_check.
        return {str(k): check_id(val, None, f"channel id of {k!r}") for k, val in v.items()}


def cross_check(
    config: Gb28181Config,
    zones: set[str],
    inputs: set[str],
    cameras: set[str],
    outputs: set[str],
    serial: set[str],
) -> list[tuple[tuple, str]]:
    """Channel ids name known things with the right type code; rules name known zones/sources."""
    found: list[tuple[tuple, str]] = []
    kinds: dict[str, tuple[tuple[int, ...] | range, str]] = {}
    for names, types, what in (
        (inputs, (INPUT_TYPE,), "input"),
        (serial, (INPUT_TYPE,), "serial device"),
        (cameras, CAMERA_TYPES, "camera"),
        (outputs, (OUTPUT_TYPE,), "output"),
    ):
        for name in names:
            kinds.setdefault(name, (types, what))
    seen: dict[str, str] = {}
    for key, value in config.channels.items():
        loc = ("gb28181", "channels", key)
        if key not in kinds:
            found.append((loc, f"{key!r} is not an input, camera, output or serial device id"))
            continue
        types, what = kinds[key]
        try:
            check_id(value, types, f"channel id of {what} {key!r}")
        except ValueError as exc:
            found.append((loc, str(exc)))
        if value in seen:
            found.append((loc, f"channel id {value} is already used by {seen[value]!r}"))
        seen.setdefault(value, key)
    if config.device_id and config.device_id in seen:
        found.append(
            (("gb28181", "device_id"), f"also used as the channel id of {seen[config.device_id]!r}")
        )
    for i, rule in enumerate(config.rules):
        if rule.zone is not None and rule.zone not in zones:
            found.append(
                (("gb28181", "rules", i, "zone"), f"zone {rule.zone!r} is not defined in zones")
            )
        if rule.source is not None and rule.source not in kinds:
            found.append(
                (
                    ("gb28181", "rules", i, "source"),
                    f"{rule.source!r} is not an input, camera or serial device id",
                )
            )
    return found


class Gb28181Mapper:
    """Event type, source and zone -> the ``gb28181`` object of an alarm or fault event."""

    def __init__(self, config: Gb28181Config):
        self._config = config

    def code(
        self, event_type: str, source_kind: str, source_id: str, zone: str | None
    ) -> Code | None:
        head = event_type.split(".", 1)[0]
        if head not in ("alarm", "fault"):
            return None
        base = event_type.removesuffix(RESTORE)
        camera = source_kind == "camera"
        default = (CAMERA_DEFAULTS.get(base) if camera else None) or DEFAULTS.get(base)
        if default is None:
            default = (CAMERA_ALARM if camera else OTHER_ALARM) if head == "alarm" else OTHER_FAULT
        method, alarm_type, priority = default
        for rule in self._config.rules:
            if not rule.matches(event_type, source_id, zone):
                continue
            if rule.method is not None and rule.method != method:
                method, alarm_type = rule.method, None  # a type belongs to its method
            if rule.alarm_type is not None:
                alarm_type = rule.alarm_type
            if rule.priority is not None:
                priority = rule.priority
        return Code(
            method=method,
            type=alarm_type,
            priority=priority,
            device_id=self._config.device_id,
            channel_id=self._config.channels.get(source_id),
        )
