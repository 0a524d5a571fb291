"""Liveness of the agent's worker threads, as the systemd watchdog needs it.

A thread that is alive but stuck (an inference that never returns, an uplink
loop blocked on a dead socket) must stop the watchdog pings so systemd
restarts the service. ``is_alive()`` cannot see that; a heartbeat can: the
worker calls ``beat()`` once per loop turn, and ``alive()`` turns false when
the last beat is older than the turn may ever take.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Heartbeat:
    def __init__(self, max_age_s: float, clock: Callable[[], float] = time.monotonic):
        self.max_age_s = max_age_s
        self._clock = clock
        # A worker that never started is not counted stuck: it has its own check.
        self._last: float | None = None

    def beat(self) -> None:
        self._last = self._clock()

    def age(self) -> float | None:
        return None if self._last is None else self._clock() - self._last

    def alive(self) -> bool:
        age = self.age()
        return age is None or age <= self.max_age_s


class Liveness:
    """Named checks other components register; the agent is healthy when all pass.

    ``register("camera-1", heartbeat.alive)`` is all a new worker needs.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._checks: dict[str, Callable[[], bool]] = {}

    def register(self, name: str, check: Callable[[], bool]) -> None:
        with self._lock:
            self._checks[name] = check

    def failing(self) -> list[str]:
        with self._lock:
            checks = list(self._checks.items())
        out = []
        for name, check in checks:
            try:
                ok = check()
            except Exception:
                ok = False  # a check that cannot answer is not a healthy one
            if not ok:
                out.append(name)
        return out
