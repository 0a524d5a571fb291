"""Time as the box knows it: wall clock, monotonic clock and whether to trust the wall clock.

Posts often have no RTC: after a power cut the wall clock may start in 1970
or at the last fake-hwclock save until NTP syncs over 4G. Every event carries
``mono_ns`` and ``boot_id`` so the platform can place it anyway.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

TIME_ERROR = 5  # adjtimex(2) state: clock not synchronised
_TIMESYNC_FLAG = Path("/run/systemd/timesync/synchronized")


@dataclass(frozen=True)
class Stamp:
    ts_ms: int
    mono_ns: int
    trusted: bool


def read_boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        # Not Linux: a per-process id still lets the platform group mono_ns values.
        return str(uuid.uuid4())


def kernel_says_synchronised() -> bool | None:
    """adjtimex with modes=0 only reads; None when the call is unavailable."""
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        buf = ctypes.create_string_buffer(512)  # larger than struct timex; zeroed = read-only
        state = libc.adjtimex(buf)
    except (OSError, AttributeError):
        return None
    return None if state < 0 else state != TIME_ERROR


def system_clock_synchronised() -> bool:
    return _TIMESYNC_FLAG.exists() or bool(kernel_says_synchronised())


class Clock:
    def __init__(
        self,
        trust: Literal["auto", "always", "never"] = "auto",
        recheck_s: float = 10,
        probe: Callable[[], bool] | None = None,
    ):
        self.boot_id = read_boot_id()
        self._trust = trust
        self._probe = probe or system_clock_synchronised
        self._recheck_ns = int(recheck_s * 1e9)
        self._checked_at = -self._recheck_ns
        self._trusted = trust == "always"
        self._lock = threading.Lock()
        self._on_sync: list[Callable[[Stamp], None]] = []
        # (wall ms, monotonic ns) at the moment the clock became trusted in this boot
        self.anchor: tuple[int, int] | None = None

    def on_sync(self, callback: Callable[[Stamp], None]) -> None:
        """Called once when an untrusted clock becomes trusted (NTP synchronised)."""
        self._on_sync.append(callback)

    def trusted(self) -> bool:
        if self._trust != "auto":
            return self._trust == "always"
        now = time.monotonic_ns()
        with self._lock:
            if now - self._checked_at < self._recheck_ns:
                return self._trusted
            self._checked_at = now
            was, self._trusted = self._trusted, self._probe()
            became = self._trusted and not was
            if became:
                self.anchor = (time.time_ns() // 1_000_000, time.monotonic_ns())
        if became:
            stamp = Stamp(self.anchor[0], self.anchor[1], True)
            for callback in self._on_sync:
                callback(stamp)
        return self._trusted

    def corrected_ts(self, boot_id: str, mono_ns: int) -> int | None:
        """Wall time for an event recorded before sync in this boot, from the sync anchor."""
        if self.anchor is None or boot_id != self.boot_id:
            return None
        wall_ms, mono_at_sync = self.anchor
        return wall_ms - (mono_at_sync - mono_ns) // 1_000_000

    def stamp(self) -> Stamp:
        return Stamp(time.time_ns() // 1_000_000, time.monotonic_ns(), self.trusted())
