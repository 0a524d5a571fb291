"""Periodic ``status.health`` events: what an operator needs to see a box is well."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from shaobing.core.events import EventSink, Source
from shaobing.core.worker import LoopWorker

log = logging.getLogger("shaobing.health")

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


Section = Callable[[], Any] | Mapping[str, "Section"]


def _gather(sections: Mapping[str, Section], path: str, failed: list[str]) -> dict[str, Any]:
    """Evaluate each section on its own: one that raises is reported as an error
    in its place instead of taking the whole `status.health` down with it."""
    out: dict[str, Any] = {}
    for name, section in sections.items():
        where = f"{path}{name}"
        if isinstance(section, Mapping):
            out[name] = _gather(section, f"{where}.", failed)
            continue
        try:
            out[name] = section()
        except Exception as exc:
            failed.append(where)
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
            log.warning(
                "health section failed", extra={"fields": {"section": where, "error": str(exc)}}
            )
    return out


class HealthReporter:
    """`status.health` every ``interval_s`` on the shared worker lifecycle."""

    def __init__(
        self,
        sink: EventSink,
        interval_s: float,
        storage_dir: Path,
        sections: Callable[[], Mapping[str, Section]],
        on_snapshot: Callable[[dict[str, Any]], None] | None = None,
    ):
        self._sink = sink
        self._dir = storage_dir
        self._sections = sections
        self._on_snapshot = on_snapshot
        self._started = time.monotonic()
        self._section_errors = 0
        self.worker = LoopWorker("health", self.report, interval_s)

    def snapshot(self) -> dict[str, Any]:
        failed: list[str] = []
        data = {
            "uptime_s": round(time.monotonic() - self._started, 1),
            "cpu_temp_c": cpu_temperature_c(),
            "disk_free_bytes": disk_free_bytes(self._dir),
            **_gather(self._sections(), "", failed),
        }
        self._section_errors += len(failed)
        data["health"] = {
            "section_errors": self._section_errors,
            "failed_sections": failed,
            "turn_errors": self.worker.state.errors,
        }
        return data

    def report(self) -> None:
        snapshot = self.snapshot()
        self._sink.emit("status.health", Source(kind="agent", id="health"), data=snapshot)
        if self._on_snapshot is not None:
            self._on_snapshot(snapshot)

    def start(self) -> None:
        self.worker.start()

    def alive(self) -> bool:
        return self.worker.alive()

    def stop(self) -> None:
        self.worker.stop()
