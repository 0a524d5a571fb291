"""Shared by the serial driver tests: a list-collecting sink and a deadline wait."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Emitted:
    type: str
    source_kind: str
    source_id: str
    zone: str | None
    data: dict[str, Any] = field(default_factory=dict)
    severity: Any = None


class ListSink:
    """Stands in for the recorder: keeps what drivers emit, in order."""

    def __init__(self) -> None:
        self.events: list[Emitted] = []
        self._lock = threading.Lock()

    def emit(
        self,
        type: str,
        source: Any,
        *,
        zone: str | None = None,
        data: Mapping[str, Any] | None = None,
        severity: Any = None,
        attachment: bytes | None = None,
    ) -> Emitted:
        e = Emitted(type, source.kind, source.id, zone, dict(data or {}), severity)
        with self._lock:
            self.events.append(e)
        return e

    def of(self, type: str) -> list[Emitted]:
        with self._lock:
            return [e for e in self.events if e.type == type]

    def types(self) -> list[str]:
        with self._lock:
            return [e.type for e in self.events]
