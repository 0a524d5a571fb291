"""The one event model every driver, the outbox and the uplink share.

Drivers never build an ``Event`` themselves: they call ``EventSink.emit`` with
what only they know (type, source, zone, data). The sink (``agent.recorder``)
adds identity, time, sequence number and location, and commits the event to
the outbox before ``emit`` returns.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any, Protocol

from pydantic import Field

from shaobing.core.gb28181 import Code as Gb28181Code
from shaobing.core.model import Strict

SCHEMA_VERSION = 1


class Severity(StrEnum):
    CRITICAL = "critical"
    MAJOR = "major"
    MINOR = "minor"
    INFO = "info"


class Priority(IntEnum):
    """Outbox class: lower drains first and is evicted last."""

    ALARM = 0
    FAULT = 1
    STATUS = 2
    SNAPSHOT = 3


def priority_of(event_type: str) -> Priority:
    head = event_type.split(".", 1)[0]
    return {
        "alarm": Priority.ALARM,
        "fault": Priority.FAULT,
        "snapshot": Priority.SNAPSHOT,
    }.get(head, Priority.STATUS)


def default_severity(event_type: str) -> Severity:
    head = event_type.split(".", 1)[0]
    if event_type == "alarm.panic":
        return Severity.CRITICAL
    return {"alarm": Severity.MAJOR, "fault": Severity.MINOR}.get(head, Severity.INFO)


class Source(Strict):
    kind: str = Field(description="driver kind: gpio, modbus, contact_id, camera, agent, ...")
    id: str = Field(description="driver instance id from the config")


class Site(Strict):
    village_code: str
    code_year: int
    village_name: str


class Gps(Strict):
    lat: float
    lon: float


class RailwayPlace(Strict):
    line: str
    start: str = Field(description="K-mileage, e.g. K123+450")
    end: str | None = None
    side: str = Field(description="上行, 下行 or 双线")


class ZoneRef(Strict):
    id: str
    name: str | None = None
    railway: RailwayPlace | None = None
    gps: Gps | None = None


class Event(Strict):
    v: int = SCHEMA_VERSION
    id: str = Field(description="ULID: unique and time-sortable")
    seq: int = Field(description="per-device monotonic, persisted across restarts")
    device: str
    site: Site
    ts: int = Field(description="UTC wall-clock time, ms since the epoch")
    mono_ns: int = Field(description="CLOCK_MONOTONIC at the event, ns since boot")
    boot_id: str
    clock_trusted: bool
    type: str
    severity: Severity
    source: Source
    zone: ZoneRef | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    gb28181: Gb28181Code | None = Field(
        default=None, description="GB/T 28181 alarm code of alarm.* and fault.* events"
    )

    @property
    def priority(self) -> Priority:
        return priority_of(self.type)


@dataclass(frozen=True, slots=True)
class DeviceFrame:
    """The device message an event answers, for drivers that acknowledge to a device.

    Given to ``emit``, it makes the event durable before ``emit`` returns,
    whatever its class, and records the frame with the event's id in the same
    commit (the durable duplicate window, ``FrameMark``). A driver acknowledges
    the device only after that return: nothing is acknowledged before the event
    it produced is durable.
    """

    scope: str  # who sent it, e.g. "contact_id:host1"
    frame: str  # the frame in the driver's canonical form
    wait_s: float  # how long emit may wait for the commit (keep below the device's ack wait)


@dataclass(frozen=True, slots=True)
class FrameMark:
    """A device frame committed with the event it produced (see ``DeviceFrame``)."""

    scope: str
    frame: str
    event_id: str
    seq: int
    ts_ms: int  # wall clock when committed


class NotYetDurable(TimeoutError):
    """The event is queued but its commit did not land within ``DeviceFrame.wait_s``.

    Do not acknowledge: the device sends again. ``wait(timeout)`` waits on for
    the same commit: True once it landed, False if still pending; it raises the
    commit's error if the commit failed (then the event is not recorded).
    """

    def __init__(self, event_id: str, wait: Callable[[float], bool]) -> None:
        super().__init__(f"event {event_id} not yet durable")
        self.event_id = event_id
        self.wait = wait


class EventSink(Protocol):
    """What drivers are given.

    ``emit`` returns the recorded event once it is durable (alarm and fault
    classes, and any event given a ``frame``) or queued (status, snapshot), or
    None when the linkage layer decided not to record it as such (an alarm in
    a disarmed zone, or a repeat folded into the alarm before it; see
    docs/linkage.md). With a ``frame`` it raises ``NotYetDurable`` when the
    commit takes longer than ``frame.wait_s``.
    """

    def emit(
        self,
        type: str,
        source: Source,
        *,
        zone: str | None = None,
        data: Mapping[str, Any] | None = None,
        severity: Severity | None = None,
        attachment: bytes | None = None,
        frame: DeviceFrame | None = None,
    ) -> Event | None: ...

    def recent_frames(self, scope: str) -> list[FrameMark]:
        """Frames of ``scope`` committed with their events, oldest first (bounded, pruned)."""
        ...


class ConditionView(Protocol):
    """What a sink may also offer: the conditions still open since before this start.

    The agent's sinks answer from the ledger of open conditions
    (agent/conditions.py); a driver uses it, through ``opened_before``, only
    to reconcile its first reading: a condition held open that it now finds
    normal gets its end (restore, ``fault.cleared``, camera ``recovered``).
    """

    def opened_before(
        self, source: Source, zone: str | None, condition: str, channel: str = ""
    ) -> bool: ...


def opened_before(
    sink: object, source: Source, zone: str | None, condition: str, channel: str = ""
) -> bool:
    """True if ``sink`` holds ``condition`` open since an earlier run; False for a plain sink.

    ``channel``: the device's own channel where several share a zone (a Modbus
    device zone as text; an alarm host's "group:zone").
    """
    view = getattr(sink, "opened_before", None)
    return bool(view(source, zone, condition, channel)) if callable(view) else False
