"""Ademco Contact ID (SIA DC-05) messages: parsing and the mapping to event types.

A message carries 16 digits ``AAAA MM Q XYZ GG CCC S``: account, message type
(18 or 98), qualifier, event code, group (partition), zone or user, and a
check digit. Each digit has a value: 1-9 are themselves, 0 counts as 10 and
B-F count 11-15 (A is not a Contact ID digit). The values of all 16 digits
must add up to a multiple of 15.

Two text framings are accepted on a serial line (see ``docs/serial.md``):

* raw: ``1234181131010015`` (the 16 digits as sent by DTMF),
* line: ``1234 18 1131 01 001 5`` (the same digits in six groups separated by
  spaces, as many serial receivers print them).

Parsing is a pure function: it returns a ``ContactIdMessage`` or raises a
``ContactIdError`` that names the field at fault and its position.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

_DIGIT_VALUES = {str(d): d for d in range(1, 10)} | {
    "0": 10,
    "B": 11,
    "C": 12,
    "D": 13,
    "E": 14,
    "F": 15,
}
_VALUE_DIGITS = {v: k for k, v in _DIGIT_VALUES.items()}

# Where each field starts and how long it is in the 16-digit form.
_FIELDS: tuple[tuple[str, int, int], ...] = (
    ("account", 0, 4),
    ("message type", 4, 2),
    ("qualifier", 6, 1),
    ("event code", 7, 3),
    ("group", 10, 2),
    ("zone", 12, 3),
    ("checksum", 15, 1),
)
_LINE_GROUPS = (4, 2, 4, 2, 3, 1)
_LINE_RE = re.compile(r"^\s*(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s*$")


class ContactIdError(ValueError):
    """A frame that is not a valid Contact ID message.

    ``field`` names the part at fault and ``position`` is the 0-based index
    of the offending character in the frame (``None`` when the whole frame is
    at fault, e.g. its length).
    """

    def __init__(self, reason: str, *, field: str, position: int | None = None) -> None:
        where = f" at position {position}" if position is not None else ""
        super().__init__(f"{field}: {reason}{where}")
        self.reason = reason
        self.field = field
        self.position = position


class Qualifier(StrEnum):
    NEW = "new"  # new event, or an opening (disarm) for 4xx codes
    RESTORE = "restore"  # restore, or a closing (arm) for 4xx codes
    STATUS = "status"  # previously reported condition still present


_QUALIFIERS = {"1": Qualifier.NEW, "3": Qualifier.RESTORE, "6": Qualifier.STATUS}


@dataclass(frozen=True, slots=True)
class ContactIdMessage:
    account: str
    message_type: str
    qualifier: Qualifier
    code: int
    group: int
    zone: int
    raw: str  # the canonical 16-digit form

    def as_data(self) -> dict[str, object]:
        """What goes into ``event.data.contact_id``."""
        return {
            "account": self.account,
            "message_type": self.message_type,
            "qualifier": self.qualifier.value,
            "code": self.code,
            "group": self.group,
            "zone": self.zone,
            "raw": self.raw,
        }


def digit_sum(digits: str) -> int:
    return sum(_DIGIT_VALUES[c] for c in digits)


def checksum_digit(first15: str) -> str:
    """The check digit that makes the 16-digit total a multiple of 15."""
    s = (15 - digit_sum(first15) % 15) % 15
    return _VALUE_DIGITS[s or 15]


def format_raw(
    account: str, qualifier: str, code: int, group: int, zone: int, message_type: str = "18"
) -> str:
    """Build a valid 16-digit message (used by the simulator and tests)."""
    body = f"{account}{message_type}{qualifier}{code:03d}{group:02d}{zone:03d}"
    return body + checksum_digit(body)


def _to_raw(frame: str) -> tuple[str, list[int]]:
    """Digits of ``frame`` in the 16-digit order and each digit's index in frame."""
    stripped = frame.strip()
    if " " not in stripped and "\t" not in stripped:
        offset = frame.index(stripped[0]) if stripped else 0
        return stripped, [offset + i for i in range(len(stripped))]
    m = _LINE_RE.match(frame)
    if not m:
        raise ContactIdError(
            "line form needs six groups 'ACCT MT QXYZ GG CCC S'", field="frame", position=None
        )
    digits: list[str] = []
    positions: list[int] = []
    for i, (group, want) in enumerate(zip(m.groups(), _LINE_GROUPS, strict=True)):
        if len(group) != want:
            name = ("account", "message type", "qualifier+event", "group", "zone", "checksum")[i]
            raise ContactIdError(
                f"group has {len(group)} characters, expected {want}",
                field=name,
                position=m.start(i + 1),
            )
        digits.append(group)
        positions.extend(range(m.start(i + 1), m.end(i + 1)))
    return "".join(digits), positions


def parse(frame: str | bytes) -> ContactIdMessage:
    """Parse one frame (without its terminator) into a message."""
    if isinstance(frame, bytes | bytearray):
        try:
            frame = bytes(frame).decode("ascii")
        except UnicodeDecodeError as exc:
            raise ContactIdError("not ASCII", field="frame", position=exc.start) from None
    if not frame.strip():
        raise ContactIdError("empty frame", field="frame")
    raw, pos = _to_raw(frame.upper())
    if len(raw) != 16:
        raise ContactIdError(f"{len(raw)} digits, expected 16", field="frame")
    for name, start, length in _FIELDS:
        for i in range(start, start + length):
            c = raw[i]
            decimal_only = name not in ("account", "checksum")
            if c not in _DIGIT_VALUES or (decimal_only and not c.isdigit()):
                kind = "a decimal digit" if decimal_only else "a digit 0-9 or B-F"
                raise ContactIdError(f"{c!r} is not {kind}", field=name, position=pos[i])
    mt = raw[4:6]
    if mt not in ("18", "98"):
        raise ContactIdError(
            f"message type {mt!r}, expected 18 or 98", field="message type", position=pos[4]
        )
    q = raw[6]
    if q not in _QUALIFIERS:
        raise ContactIdError(
            f"qualifier {q!r}, expected 1, 3 or 6", field="qualifier", position=pos[6]
        )
    total = digit_sum(raw)
    if total % 15:
        raise ContactIdError(
            f"digit sum {total} is not a multiple of 15 (check digit should be "
            f"{checksum_digit(raw[:15])!r})",
            field="checksum",
            position=pos[15],
        )
    return ContactIdMessage(
        account=raw[0:4],
        message_type=mt,
        qualifier=_QUALIFIERS[q],
        code=int(raw[7:10]),
        group=int(raw[10:12]),
        zone=int(raw[12:15]),
        raw=raw,
    )


# --- mapping to shaobing event types ---------------------------------------

# Exact codes first, then the SIA DC-05 ranges. Burglary codes map to the
# configured burglary type (railway hosts guard perimeters, so
# ``alarm.perimeter`` is the default; a village host may prefer
# ``alarm.intrusion``).
_BURGLARY = "<burglary>"
_EXACT: dict[int, str] = {
    100: "alarm.medical",
    121: "alarm.duress",
    137: "alarm.tamper",
    144: "alarm.tamper",
    145: "alarm.tamper",
    383: "alarm.tamper",
    301: "fault.ac_loss",
    302: "fault.low_battery",
    309: "fault.low_battery",
    311: "fault.low_battery",
    384: "fault.low_battery",
    321: "fault.siren",
    381: "fault.sensor_supervision",
    380: "fault.sensor",
    570: "status.bypass",
    601: "status.test",
    602: "status.heartbeat",
}
_RANGES: tuple[tuple[int, int, str], ...] = (
    (100, 109, "alarm.medical"),
    (110, 119, "alarm.fire"),
    (120, 129, "alarm.panic"),
    (130, 139, _BURGLARY),
    (140, 199, "alarm.general"),
    (200, 299, "alarm.supervisory"),
    (350, 359, "fault.communication"),
    (370, 379, "fault.loop"),
    (300, 399, "fault.system"),
    (400, 499, "status.arming"),
    (500, 599, "status.disable"),
    (600, 699, "status.test"),
)


def event_type_for(code: int, burglary_type: str = "alarm.perimeter") -> str:
    t = _EXACT.get(code)
    if t is None:
        t = next((name for lo, hi, name in _RANGES if lo <= code <= hi), "status.contact_id")
    return burglary_type if t == _BURGLARY else t


@dataclass(frozen=True, slots=True)
class MappedEvent:
    type: str
    data: dict[str, object]


def to_event(msg: ContactIdMessage, burglary_type: str = "alarm.perimeter") -> MappedEvent:
    """The shaobing event (type and data) a message stands for.

    Scheme (same as the Modbus driver): ``alarm.*`` keep their type on
    restore with ``data.state = "restore"``; a fault's end is
    ``fault.cleared`` with ``data.cleared`` naming the fault; 4xx are
    ``status.arming`` where a new event is an opening (disarm) and a restore a
    closing (arm).
    """
    t = event_type_for(msg.code, burglary_type)
    data: dict[str, object] = {"contact_id": msg.as_data()}
    head = t.split(".", 1)[0]
    if t == "status.arming":
        armed = msg.qualifier is Qualifier.RESTORE
        data |= {"state": "arm" if armed else "disarm", "armed": armed, "user": msg.zone}
    elif msg.qualifier is Qualifier.STATUS:
        data["state"] = "status"
    elif msg.qualifier is Qualifier.RESTORE:
        data["state"] = "restore"
        if head == "fault":
            data["cleared"] = t
            t = "fault.cleared"
    else:
        data["state"] = {"alarm": "alarm", "fault": "fault"}.get(head, "event")
    return MappedEvent(type=t, data=data)
