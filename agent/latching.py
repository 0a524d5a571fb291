"""Open alarms and their acknowledgement, as GB 50394 (入侵报警系统工程设计规范) expects.

An alarm the linkage reported stays *open* (latched) until someone
acknowledges it, locally (a ``reset`` key switch or button input) or with the
platform's signed ``acknowledge`` command, and a ``status.acknowledge`` event
records who did. A restore alone does not close a latched alarm: the guard
must have seen it. The rule's outputs keep their pattern until then
(``latching.hold_outputs``), capped by ``latching.hold_max_s`` so a siren
still stops by itself on an unattended post.

Alarm types the standard wants always on (``alarm.panic`` in
``arming.always_armed``: a panic input cannot be disarmed; ``alarm.tamper`` in
``always_armed`` or ``always_reported``: tamper reports armed or disarmed;
faults are never subject to arming) are checked in ``cross_check``.

Open alarms live in memory: after a restart, an input still in alarm is
reported again at start (``at_start``) and latches anew.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from pydantic import Field

from shaobing.core.model import Strict

RESET_SENSOR = "reset"


class LatchingConfig(Strict):
    enabled: bool = Field(
        default=True,
        description="alarms stay open until acknowledged (GB 50394); false: until restored",
    )
    hold_outputs: bool = Field(
        default=True,
        description="a linked alarm's outputs keep their pattern until it is acknowledged",
    )
    hold_max_s: float = Field(
        default=900.0,
        gt=0,
        le=3600,
        description="held outputs stop after this long even if nobody acknowledges",
    )


@dataclass
class OpenAlarm:
    alarm_id: str
    type: str
    zone: str
    source: str  # kind:id
    ts: int
    restored: bool = False
    acknowledged: bool = False
    outputs: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        state = "restored, waiting for acknowledgement" if self.restored else "active"
        if self.acknowledged:
            state = "acknowledged, input still in alarm"
        return {**asdict(self), "state": state}


class Latches:
    """Thread-safe registry of open alarms; the linkage owns it."""

    def __init__(self, config: LatchingConfig):
        self.config = config
        self._lock = threading.Lock()
        self._open: dict[str, OpenAlarm] = {}

    def opened(self, alarm: OpenAlarm) -> None:
        with self._lock:
            self._open[alarm.alarm_id] = alarm

    def restored(self, type: str, source: str, zone: str) -> None:
        """The input behind an alarm returned to normal."""
        with self._lock:
            for alarm in list(self._open.values()):
                if (alarm.type, alarm.source, alarm.zone) != (type, source, zone):
                    continue
                alarm.restored = True
                if alarm.acknowledged or not self.config.enabled:
                    del self._open[alarm.alarm_id]

    def acknowledge(
        self, zones: Iterable[str] | Literal["all"], alarm_ids: Iterable[str] | None = None
    ) -> list[OpenAlarm]:
        """Close the matching open alarms; returns them (acknowledged) for the record."""
        wanted = None if alarm_ids is None else set(alarm_ids)
        zone_set = None if zones == "all" else set(zones)
        done: list[OpenAlarm] = []
        with self._lock:
            for alarm in list(self._open.values()):
                if alarm.acknowledged:
                    continue
                if zone_set is not None and alarm.zone not in zone_set:
                    continue
                if wanted is not None and alarm.alarm_id not in wanted:
                    continue
                alarm.acknowledged = True
                done.append(alarm)
                if alarm.restored:
                    del self._open[alarm.alarm_id]
        return done

    def held_outputs(self) -> set[str]:
        """Outputs still wanted by an open, unacknowledged alarm."""
        with self._lock:
            return {o for a in self._open.values() if not a.acknowledged for o in a.outputs}

    def open(self) -> list[dict[str, Any]]:
        with self._lock:
            return [a.as_dict() for a in self._open.values()]


def cross_check(config: Any) -> list[tuple[tuple, str]]:
    """What GB 50394 does not let a config turn off."""
    found: list[tuple[tuple, str]] = []
    arming = config.arming
    if "alarm.panic" not in arming.always_armed:
        found.append(
            (
                ("arming", "always_armed"),
                "must include alarm.panic: a panic input cannot be disarmed (GB 50394)",
            )
        )
    if "alarm.tamper" not in (*arming.always_armed, *arming.always_reported):
        found.append(
            (
                ("arming", "always_reported"),
                "must include alarm.tamper (or always_armed must): tamper is reported "
                "armed or disarmed (GB 50394)",
            )
        )
    return found
