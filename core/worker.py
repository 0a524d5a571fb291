"""One lifecycle for the agent's periodic worker threads.

A worker thread that dies on an unexpected exception, or stops turning while
its thread is still alive, used to go unnoticed: `status.health` stopped and
the systemd watchdog kept being fed. `LoopWorker` guards every turn (an
exception is logged and counted, the loop goes on), beats a heartbeat per
turn, and answers `alive()` for the agent's liveness checks, so a new periodic
worker only writes its `turn()`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from shaobing.core.watchdog import Heartbeat

log = logging.getLogger("shaobing.worker")


class Worker(Protocol):
    name: str

    def start(self) -> None: ...

    def stop(self, timeout: float = 2.0) -> None: ...

    def alive(self) -> bool: ...


@dataclass
class WorkerState:
    turns: int = 0
    errors: int = 0
    last_error: str | None = None


class LoopWorker:
    """Runs ``turn()`` now and then every ``interval_s`` on a named thread.

    ``max_turn_s`` bounds how long one turn may take before the worker counts
    as wedged (its heartbeat goes stale and ``alive()`` turns false).
    """

    def __init__(
        self,
        name: str,
        turn: Callable[[], None],
        interval_s: float,
        max_turn_s: float = 30.0,
        run_first: bool = True,
    ):
        self.name = name
        self.state = WorkerState()
        self._turn = turn
        self._interval = interval_s
        self._run_first = run_first
        self._stop = threading.Event()
        # Stale once a turn plus the wait before it has taken longer than allowed.
        self._beat = Heartbeat(max_age_s=interval_s + max_turn_s)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._beat.beat()
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def alive(self) -> bool:
        if self._stop.is_set():
            return True  # stopping is not a failure
        return self._thread.is_alive() and self._beat.alive()

    def _run(self) -> None:
        if self._run_first:
            self._guarded()
        while not self._stop.wait(self._interval):
            self._guarded()

    def _guarded(self) -> None:
        try:
            self._turn()
        except Exception as exc:  # a failing turn must never end the worker
            self.state.errors += 1
            self.state.last_error = f"{type(exc).__name__}: {exc}"
            log.exception(
                "worker turn failed", extra={"fields": {"worker": self.name, "error": str(exc)}}
            )
        finally:
            self.state.turns += 1
            self._beat.beat()
