"""The ledger of open conditions: every condition opened is closed exactly once, across restarts.

A *condition* is something a source reports as starting and, later, ending:
a zone alarm (``alarm.X`` ... ``alarm.X.restore``), a fault (``fault.X`` ...
``fault.cleared`` with ``data.cleared == "fault.X"``), a camera outage
(``fault.camera`` ``down`` ... ``recovered``). It is keyed by source (kind and
id), zone and condition type. The event model says which events open and close
one (``change_of``), so the ledger is written once here, not per driver.

The Recorder asks the ledger about every event it is given and hands the
resulting ``Change`` to the outbox, which writes the ``conditions`` table in
the same SQLite transaction as the event (agent/outbox.py): an event and the
condition it opens or closes are durable together or not at all.

Rules (``ConditionLedger.admit``), which make the invariant hold across a
restart (SIGTERM, SIGKILL or power cut):

- a start of a condition still open from an earlier run is not news: it is
  not recorded again (a driver that finds a fault at start, or an input still
  in alarm, does not report a second start);
- an end of a condition that is not open is not recorded (nothing to close:
  a driver's first reading of a normal input, or a restore whose alarm was
  never recorded);
- an end of a condition opened by an earlier run is recorded with
  ``data.found_at_start: true`` and ``data.opened_id`` (the id of the event
  that opened it).

Drivers reconcile their first reading through ``opened_before`` on the sink
they are given (``core.events.opened_before``): for each condition they find
normal at their first reading and that the ledger holds open, they emit its
end. They never import this module.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from shaobing.core.events import Source

log = logging.getLogger("shaobing.conditions")

RESTORE = ".restore"
# Sources that report conditions. The agent's own faults (fault.storage,
# fault.detector) are one-off reports with no end, so they stay out.
CONDITION_SOURCES = frozenset({"gpio", "modbus", "contact_id", "camera"})
# data.state values of an event that neither starts nor ends anything: a
# Contact ID "condition still present" report.
NEUTRAL_STATES = frozenset({"status"})


@dataclass(frozen=True, slots=True)
class Key:
    source_kind: str
    source_id: str
    zone: str  # "" for a device-wide condition
    condition: str  # the type that opens it: alarm.perimeter, fault.device_offline, ...
    # The device's own channel, where several share one zone (an alarm host's
    # unmapped zones all report in its default zone): "" for none.
    channel: str = ""

    @classmethod
    def of(cls, source: Source, zone: str | None, condition: str, channel: str = "") -> Key:
        return cls(source.kind, source.id, zone or "", condition, channel)


@dataclass(frozen=True, slots=True)
class OpenCondition:
    key: Key
    event_id: str
    seq: int
    run: int
    opened_ms: int


@dataclass(frozen=True, slots=True)
class Change:
    """What an event does to the ledger; applied by the outbox in the event's transaction."""

    key: Key
    opens: bool


def change_of(
    type: str, source: Source, zone: str | None, data: Mapping[str, Any] | None
) -> Change | None:
    """The condition an event starts or ends, or None if it is not part of one."""
    if source.kind not in CONDITION_SOURCES:
        return None
    data = data or {}
    # A camera track (alarm.intrusion phase start/update/end) follows one object,
    # not a condition of the post; its id does not survive a restart.
    if "phase" in data or data.get("state") in NEUTRAL_STATES:
        return None
    head = type.split(".", 1)[0]
    if head not in ("alarm", "fault"):
        return None
    ch = channel_of(data)
    if type == "fault.cleared":
        cleared = data.get("cleared")
        return Change(Key.of(source, zone, str(cleared), ch), opens=False) if cleared else None
    if type.endswith(RESTORE):
        return Change(Key.of(source, zone, type.removesuffix(RESTORE), ch), opens=False)
    if data.get("state") == "recovered":  # fault.camera's end
        return Change(Key.of(source, zone, type, ch), opens=False)
    return Change(Key.of(source, zone, type, ch), opens=True)


def channel_of(data: Mapping[str, Any]) -> str:
    """The device's channel of a condition: a Modbus device zone, an alarm host's group:zone."""
    if data.get("device_zone") is not None:
        return str(data["device_zone"])
    cid = data.get("contact_id")
    if isinstance(cid, Mapping) and cid.get("zone") is not None:
        return f"{cid.get('group')}:{cid['zone']}"
    return ""


@dataclass(frozen=True, slots=True)
class Verdict:
    """``admit``'s answer: record it (with ``extra`` merged into data) or not."""

    record: bool
    change: Change | None = None
    extra: Mapping[str, Any] | None = None
    why: str = ""


class ConditionLedger:
    """The open conditions, in memory, mirroring the outbox's ``conditions`` table."""

    def __init__(self, open_conditions: Iterable[OpenCondition], run: int):
        self.run = run
        self._lock = threading.Lock()
        self._open = {c.key: c for c in open_conditions}

    def admit(
        self,
        type: str,
        source: Source,
        zone: str | None,
        data: Mapping[str, Any] | None,
        message: bool = False,
    ) -> Verdict:
        """Whether the event is recorded; pure (the same answer until ``applied``).

        ``message``: the event answers a message the device sent now (a Contact ID
        frame), not a reading of its state: it is always recorded (a host sends a new
        alarm for a zone only when there is one; a resend is caught by the durable
        frame window), and the ledger still follows it."""
        change = change_of(type, source, zone, data)
        if change is None:
            return Verdict(record=True)
        with self._lock:
            held = self._open.get(change.key)
        if message:
            if change.opens or held is None:
                return Verdict(record=True, change=change if change.opens else None)
            extra = None
            if held.run < self.run:
                extra = {"found_at_start": True, "opened_id": held.event_id}
            return Verdict(record=True, change=change, extra=extra)
        if change.opens:
            if held is not None and held.run < self.run:
                return Verdict(record=False, why="still open since an earlier run")
            return Verdict(record=True, change=change)
        if held is None:
            return Verdict(record=False, why="not open")
        extra = None
        if held.run < self.run:
            extra = {"found_at_start": True, "opened_id": held.event_id}
        return Verdict(record=True, change=change, extra=extra)

    def applied(self, change: Change, event_id: str, seq: int, ts_ms: int) -> None:
        """After the event's transaction committed: the memory follows the table."""
        with self._lock:
            if not change.opens:
                self._open.pop(change.key, None)
            elif change.key not in self._open:
                self._open[change.key] = OpenCondition(change.key, event_id, seq, self.run, ts_ms)

    def opened_before(
        self, source: Source, zone: str | None, condition: str, channel: str = ""
    ) -> bool:
        """Open since an earlier run, so a driver's first reading must close it if now normal."""
        with self._lock:
            held = self._open.get(Key.of(source, zone, condition, channel))
        return held is not None and held.run < self.run

    def open(self) -> list[OpenCondition]:
        with self._lock:
            return sorted(self._open.values(), key=lambda c: c.seq)
