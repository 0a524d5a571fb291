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

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import serial

from shaobing.core.events import (
    DeviceFrame,
    EventSink,
    NotYetDurable,
    Severity,
    Source,
    opened_before,
)
from shaobing.core.pause_points import pause_point

from .serial_bus import BusWorker, SerialBus
from .serial_config import ContactIdConfig

log = logging.getLogger(__name__)

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
    severity: Severity | None = None  # None: the type's default


def to_event(msg: ContactIdMessage, burglary_type: str = "alarm.perimeter") -> MappedEvent:
    """The shaobing event (type and data) a message stands for.

    Scheme (same as the Modbus and GPIO drivers): a restore of ``alarm.X`` is
    ``alarm.X.restore`` with ``data.state = "restore"``; the end of a fault is
    ``fault.cleared`` with ``data.cleared`` naming the fault; 4xx are
    ``status.arming`` where a new event is an opening (disarm) and a restore a
    closing (arm); qualifier 6 keeps the type with ``data.state = "status"``.
    """
    t = event_type_for(msg.code, burglary_type)
    data: dict[str, object] = {"contact_id": msg.as_data()}
    head = t.split(".", 1)[0]
    severity: Severity | None = None
    if t == "status.arming":
        armed = msg.qualifier is Qualifier.RESTORE
        data |= {"state": "arm" if armed else "disarm", "armed": armed, "user": msg.zone}
    elif msg.qualifier is Qualifier.STATUS:
        data["state"] = "status"
    elif msg.qualifier is Qualifier.RESTORE:
        data["state"] = "restore"
        severity = Severity.INFO
        if head == "fault":
            data["cleared"] = t
            t = "fault.cleared"
        else:
            t = f"{t}.restore"
    else:
        data["state"] = {"alarm": "alarm", "fault": "fault"}.get(head, "event")
    return MappedEvent(type=t, data=data, severity=severity)


# --- receiver ------------------------------------------------------------------

ACK = b"\x06"
NAK = b"\x15"
_TERMINATORS = b"\r\n"
MAX_FRAME = 64  # the longest valid form is 21 characters; anything far longer is noise


@dataclass
class ReceiverStats:
    frames: int = 0
    valid: int = 0
    rejected: int = 0  # any frame that is not a valid message (includes the two below)
    checksum_errors: int = 0
    overlong: int = 0
    duplicates: int = 0
    foreign_account: int = 0
    acks: int = 0
    naks: int = 0
    events: int = 0
    not_durable: int = 0  # frames left unACKed because their event was not durable in time
    last_error: str = ""


@dataclass
class _LastFrame:
    """The last frame that produced (or was meant to produce) an event."""

    raw: str
    at: float  # receiver clock
    event_id: str | None  # None: the linkage layer recorded nothing for it
    pending: NotYetDurable | None = None  # its commit had not landed when we last looked


class ContactIdReceiver:
    """Turns a Contact ID byte stream into events and the replies the host expects.

    Framing: a frame ends at CR or LF (CRLF counts once); each valid frame is
    answered with ACK (0x06) and each invalid one with NAK (0x15) so the host
    retransmits. A host retries when an ACK is lost, so a frame identical to
    the one just acknowledged, within ``duplicate_window_s``, is acknowledged
    again but not emitted twice. ``feed`` is pure protocol (bytes in, reply
    bytes out) so it runs without a port; ``ContactIdLine`` drives it from one.

    Nothing is ACKed before the event it produced is durable: every event is
    emitted with its ``DeviceFrame``, so ``emit`` returns only after the commit
    that also records the frame (``ack_wait_s`` at most; past it, no ACK, and
    the host's resend waits on the same commit instead of making a second
    event). The frame record is the duplicate window across restarts: the last
    frame committed before a crash, resent after it, is re-ACKed, not re-emitted.
    """

    def __init__(
        self, cfg: ContactIdConfig, sink: EventSink, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.cfg = cfg
        self.sink = sink
        self.clock = clock
        self.source = Source(kind="contact_id", id=cfg.id)
        self.stats = ReceiverStats()
        self.offline = False
        self._buf = bytearray()
        self._discarding = False
        self.scope = f"contact_id:{cfg.id}"
        self._last: _LastFrame | None = None
        self._last_valid_at = clock()
        self._heard_once = False
        self._resumed = False

    def _resume(self) -> None:
        """Take over the last frame an earlier run committed, if recent."""
        self._resumed = True
        marks = self.sink.recent_frames(self.scope)
        if not marks:
            return
        mark = marks[-1]
        if time.time() * 1000 - mark.ts_ms > self.cfg.restart_window_s * 1000:
            return
        # Its window starts with the first bytes from the host after the start (the
        # resend, typically): the host could not resend while we were down or starting.
        self._last = _LastFrame(mark.frame, self.clock(), mark.event_id)

    def feed(self, data: bytes) -> bytes:
        """Bytes from the line in; bytes to send back out."""
        if not self._resumed:
            self._resume()
        out = bytearray()
        for b in data:
            if b in _TERMINATORS:
                if self._discarding:
                    self._discarding = False
                elif self._buf:
                    out += self._frame(bytes(self._buf))
                self._buf.clear()
                continue
            if self._discarding:
                continue
            self._buf.append(b)
            if len(self._buf) > MAX_FRAME:
                # Noise without terminators must not grow the buffer forever.
                self.stats.frames += 1
                self.stats.overlong += 1
                self._reject("frame: longer than any Contact ID message")
                self._buf.clear()
                self._discarding = True
        return bytes(out)

    def _reject(self, why: str) -> bytes:
        self.stats.rejected += 1
        self.stats.last_error = why
        log.info("rejected frame", extra={"fields": {"source": self.cfg.id, "why": why}})
        if not self.cfg.ack:
            return b""
        self.stats.naks += 1
        return NAK

    def _ack(self) -> bytes:
        if not self.cfg.ack:
            return b""
        self.stats.acks += 1
        return ACK

    def _frame(self, frame: bytes) -> bytes:
        st = self.stats
        st.frames += 1
        try:
            msg = parse(frame)
        except ContactIdError as exc:
            if exc.field == "checksum":
                st.checksum_errors += 1
            return self._reject(str(exc))
        now = self.clock()
        try:
            # Any valid frame, even a repeat or another account's, shows the
            # host and the line are alive.
            self._alive(now)
            last = self._last
            if (
                last is not None
                and msg.raw == last.raw
                and now - last.at <= self.cfg.duplicate_window_s
            ):
                last.at = now
                if last.pending is None:
                    st.duplicates += 1
                    return self._ack()
                if self._landed(last):
                    pause_point(f"frame_committed:{self.scope}")
                    return self._ack()
                if last.pending is not None:
                    return b""  # still not durable: no ACK yet, the host tries again
                # Its commit failed: the event was never recorded, so record it now.
            if self.cfg.accounts is not None and msg.account not in self.cfg.accounts:
                # Valid, so the host must not keep retrying it; but it is not ours.
                st.foreign_account += 1
                st.last_error = f"account {msg.account} not configured"
                return self._ack()
            event_id = self._emit_message(msg)
            pause_point(f"frame_committed:{self.scope}")
        except NotYetDurable as exc:
            st.events += 1  # queued all the same: it commits later
            st.not_durable += 1
            st.last_error = str(exc)
            self._last = _LastFrame(msg.raw, now, exc.event_id, pending=exc)
            log.warning(
                "not durable in time, not acknowledged",
                extra={"fields": {"source": self.scope, "id": exc.event_id}},
            )
            return b""
        except Exception as exc:
            # Not acknowledged: the host sends it again, and we retry then.
            log.exception("sink refused a message", extra={"fields": {"source": self.cfg.id}})
            st.last_error = f"sink: {exc}"
            return b""
        st.valid += 1
        self._last = _LastFrame(msg.raw, now, event_id)
        return self._ack()

    def _landed(self, last: _LastFrame) -> bool:
        """Whether the commit ``last`` was waiting for landed (then ``pending`` is cleared).

        A failed commit also clears ``pending`` and forgets ``last``: the frame
        is then new again.
        """
        assert last.pending is not None
        try:
            if not last.pending.wait(self.cfg.ack_wait_s):
                self.stats.not_durable += 1
                return False
        except Exception as exc:
            log.warning(
                "commit failed, recording again",
                extra={"fields": {"source": self.scope, "error": str(exc)}},
            )
            last.pending = None
            self._last = None
            return False
        last.pending = None
        self.stats.valid += 1
        return True

    def _alive(self, now: float) -> None:
        zones: list[str | None] = []
        if self.offline:
            zones = self._all_zones()
        elif not self._heard_once:
            # Quiet when an earlier run ended, heard now: that fault ends here.
            zones = [
                z
                for z in self._all_zones()
                if opened_before(self.sink, self.source, z, "fault.device_offline")
            ]
        for zone in zones:
            self.sink.emit(
                "fault.cleared",
                self.source,
                zone=zone,
                data={"state": "restore", "cleared": "fault.device_offline"},
                severity=Severity.INFO,
            )
            self.stats.events += 1
        self.offline = False
        self._heard_once = True
        self._last_valid_at = now

    def _emit_message(self, msg: ContactIdMessage) -> str | None:
        """Record the message's event, durably; its id (None if linkage recorded nothing)."""
        ev = to_event(msg, self.cfg.burglary_event)
        zone = self._zone_for(msg)
        data = dict(ev.data)
        if zone is None:
            data["unmapped"] = True
        frame = DeviceFrame(self.scope, msg.raw, self.cfg.ack_wait_s)
        event = self.sink.emit(
            ev.type, self.source, zone=zone, data=data, severity=ev.severity, frame=frame
        )
        self.stats.events += 1
        return getattr(event, "id", None)

    def _zone_for(self, msg: ContactIdMessage) -> str | None:
        if msg.code // 100 != 4:  # for 4xx the zone field is a user number
            for m in self.cfg.zones:
                if m.device_zone == msg.zone and m.group in (None, msg.group):
                    return m.zone
        return self.cfg.default_zone

    def _all_zones(self) -> list[str | None]:
        zones = [m.zone for m in self.cfg.zones]
        if self.cfg.default_zone:
            zones.insert(0, self.cfg.default_zone)
        return list(dict.fromkeys(zones)) or [None]

    def check_heartbeat(self) -> None:
        """Raise fault.device_offline if the host has been quiet too long."""
        limit = self.cfg.heartbeat_timeout_s
        if limit is None or self.offline:
            return
        quiet = self.clock() - self._last_valid_at
        if quiet <= limit:
            return
        for zone in self._all_zones():
            self.sink.emit(
                "fault.device_offline",
                self.source,
                zone=zone,
                data={"state": "fault", "quiet_s": round(quiet, 1)},
            )
            self.stats.events += 1
        self.offline = True


class ContactIdLine(BusWorker):
    """Reads one serial line for a receiver, in its own thread (the host talks
    whenever it likes, so the line is read continuously)."""

    def __init__(self, receiver: ContactIdReceiver, bus: SerialBus) -> None:
        super().__init__(bus)
        self.receiver = receiver
        self.thread_name = f"contact-id-{receiver.cfg.id}"
        self._port_ok = True
        self.port_errors = 0

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                port = self.bus.open()
                # Short reads keep the heartbeat check and stop() responsive.
                data = port.read(max(1, port.in_waiting))
                self._port_ok = True
                if data:
                    reply = self.receiver.feed(data)
                    if reply:
                        port.write(reply)
            except (serial.SerialException, OSError) as exc:
                # Once per outage, not once per retry: a device server can be
                # down for hours.
                if self._port_ok:
                    log.warning(
                        "line error",
                        extra={"fields": {"source": self.receiver.cfg.id, "error": str(exc)}},
                    )
                self._port_ok = False
                self.port_errors += 1
                self.bus.close()
                self._stop.wait(min(self.bus.cfg.timeout_s * 4, 2.0))
            try:
                self.receiver.check_heartbeat()
            except Exception:
                log.exception(
                    "heartbeat check failed", extra={"fields": {"source": self.receiver.cfg.id}}
                )
