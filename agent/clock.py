"""Time as the box knows it: wall clock, monotonic clock and whether to trust the wall clock.

Posts often have no RTC: after a power cut the wall clock may start in 1970
or at the last fake-hwclock save until NTP syncs over 4G. Every event carries
``mono_ns`` and ``boot_id`` so the platform can place it anyway.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time
import uuid
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


class Clock:
    def __init__(self, trust: Literal["auto", "always", "never"] = "auto", recheck_s: float = 10):
        self.boot_id = read_boot_id()
        self._trust = trust
        self._recheck_ns = int(recheck_s * 1e9)
        self._checked_at = -self._recheck_ns
        self._trusted = False

    def trusted(self) -> bool:
        if self._trust != "auto":
            return self._trust == "always"
        now = time.monotonic_ns()
        if now - self._checked_at >= self._recheck_ns:
            self._checked_at = now
            synced = kernel_says_synchronised()
            self._trusted = _TIMESYNC_FLAG.exists() or bool(synced)
        return self._trusted

    def stamp(self) -> Stamp:
        return Stamp(time.time_ns() // 1_000_000, time.monotonic_ns(), self.trusted())
