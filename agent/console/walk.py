"""Walk test: every sensor of the post listed, each marked as the installer triggers it.

It watches what the drivers emit (``LinkageSink.observe``), before arming and
cooldown decide anything, so a disarmed zone walk-tests like an armed one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from shaobing.agent.config import Config
from shaobing.core.events import Source


@dataclass
class WalkItem:
    kind: str  # gpio, modbus, contact_id
    source: str  # input id, detector id or alarm host id
    zone: str | None
    what: str  # sensor kind or device zone, for the installer
    seen_at: float | None = None
    events: int = 0


def walk_items(config: Config) -> list[WalkItem]:
    items = [
        WalkItem("gpio", i.id, i.zone, i.kind) for i in config.inputs if i.kind not in ("reset",)
    ]
    for d in config.serial.modbus:
        items += [WalkItem("modbus", d.id, z.zone, f"zone {z.device_zone}") for z in d.zones]
    for host in config.serial.contact_id:
        items += [
            WalkItem("contact_id", host.id, z.zone, f"zone {z.device_zone}") for z in host.zones
        ]
    return items


class WalkTest:
    def __init__(self, items: list[WalkItem], clock: Callable[[], float] = time.time):
        self._items = items
        self._clock = clock
        self._lock = threading.Lock()
        self.started_at: float | None = None
        self.ended_at: float | None = None

    def start(self) -> None:
        with self._lock:
            for item in self._items:
                item.seen_at, item.events = None, 0
            self.started_at, self.ended_at = self._clock(), None

    def stop(self) -> dict[str, Any]:
        with self._lock:
            if self.started_at is not None and self.ended_at is None:
                self.ended_at = self._clock()
        return self.report()

    @property
    def running(self) -> bool:
        return self.started_at is not None and self.ended_at is None

    def observe(
        self, type_: str, source: Source, zone: str | None, data: Mapping[str, Any] | None
    ) -> None:
        """Called on the driver's thread for every emission: cheap, never raises."""
        if not self.running or not type_.startswith("alarm.") or type_.endswith(".restore"):
            return
        data = data or {}
        if source.kind == "gpio" and data.get("state") not in (None, "alarm"):
            return
        with self._lock:
            for item in self._items:
                if (
                    item.kind == source.kind
                    and item.source == source.id
                    and (item.zone == zone or source.kind == "gpio")
                ):
                    item.events += 1
                    item.seen_at = item.seen_at or self._clock()

    def report(self) -> dict[str, Any]:
        with self._lock:
            items = [asdict(i) for i in self._items]
        return {
            "running": self.running,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "items": items,
            "seen": [i["source"] for i in items if i["seen_at"] is not None],
            "not_seen": [i["source"] for i in items if i["seen_at"] is None],
        }
