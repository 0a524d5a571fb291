"""The one event model every driver, the outbox and the uplink share.

Drivers never build an ``Event`` themselves: they call ``EventSink.emit`` with
what only they know (type, source, zone, data). The sink (``agent.recorder``)
adds identity, time, sequence number and location, and commits the event to
the outbox before ``emit`` returns.
"""

from __future__ import annotations

from collections.abc import Mapping
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


class EventSink(Protocol):
    """What drivers are given.

    ``emit`` returns the recorded event once it is durable (alarm and fault
    classes) or queued (status, snapshot), or None when the linkage layer
    decided not to record it as such (an alarm in a disarmed zone, or a repeat
    folded into the alarm before it; see docs/linkage.md).
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
    ) -> Event | None: ...
