"""Periodic ``status.health`` events: what an operator needs to see a box is well."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shaobing.agent.events import EventSink, Source

THERMAL = Path("/sys/class/thermal/thermal_zone0/temp")


def cpu_temperature_c() -> float | None:
    try:
        return int(THERMAL.read_text()) / 1000
    except (OSError, ValueError):
        return None


def disk_free_bytes(path: Path) -> int | None:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


class HealthReporter:
    def __init__(
        self,
        sink: EventSink,
        interval_s: float,
        storage_dir: Path,
        sections: Callable[[], dict[str, Any]],
        on_snapshot: Callable[[dict[str, Any]], None] | None = None,
    ):
        self._sink = sink
        self._interval = interval_s
        self._dir = storage_dir
        self._sections = sections
        self._on_snapshot = on_snapshot
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="health", daemon=True)

    def snapshot(self) -> dict[str, Any]:
        return {
            "uptime_s": round(time.monotonic() - self._started, 1),
            "cpu_temp_c": cpu_temperature_c(),
            "disk_free_bytes": disk_free_bytes(self._dir),
            **self._sections(),
        }

    def report(self) -> None:
        snapshot = self.snapshot()
        self._sink.emit("status.health", Source(kind="agent", id="health"), data=snapshot)
        if self._on_snapshot is not None:
            self._on_snapshot(snapshot)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        self.report()
        while not self._stop.wait(self._interval):
            self.report()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2)
