"""The one test double for ``EventSink``: keeps what drivers emit, in order.

Drivers are tested against it on their own; everything from the recorder
onwards (outbox, uplink, broker) is tested with the real components.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from threading import Condition
from typing import Any


@dataclass
class Emitted:
    type: str
    source: Any
    zone: str | None
    data: dict[str, Any]
    severity: Any = None
    attachment: bytes | None = None
    frame: Any = None  # the DeviceFrame the event answers, if any

    @property
    def source_kind(self) -> str:
        return self.source.kind

    @property
    def source_id(self) -> str:
        return self.source.id


@dataclass
class ListSink:
    events: list[Emitted] = field(default_factory=list)
    cond: Condition = field(default_factory=Condition)

    def emit(
        self,
        type: str,
        source: Any,
        *,
        zone: str | None = None,
        data: Mapping[str, Any] | None = None,
        severity: Any = None,
        attachment: bytes | None = None,
        frame: Any = None,
    ) -> Emitted:
        ev = Emitted(type, source, zone, dict(data or {}), severity, attachment, frame)
        with self.cond:
            self.events.append(ev)
            self.cond.notify_all()
        return ev

    def recent_frames(self, scope: str) -> list:
        return []  # nothing committed: the real frame window is the outbox's

    def wait_for(self, predicate, timeout: float = 20.0) -> list[Emitted]:
        with self.cond:
            ok = self.cond.wait_for(lambda: predicate(self.events), timeout=timeout)
            assert ok, f"condition not met in {timeout}s; events: {self.events}"
            return list(self.events)

    def of_type(self, prefix: str) -> list[Emitted]:
        with self.cond:
            return [e for e in self.events if e.type.startswith(prefix)]

    def of(self, type: str) -> list[Emitted]:
        with self.cond:
            return [e for e in self.events if e.type == type]

    def types(self) -> list[str]:
        with self.cond:
            return [e.type for e in self.events]
