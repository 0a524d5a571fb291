"""One lifecycle for every thread the agent owns.

A worker thread that dies on an unexpected exception, or stops turning while
its thread is still alive, used to go unnoticed: `status.health` stopped and
the systemd watchdog kept being fed. Two shapes, one contract (``Worker``):

- ``LoopWorker`` runs a ``turn()`` every interval (health, the arming watch):
  each turn is guarded (an exception is logged and counted, the loop goes on)
  and beats a heartbeat, so a new periodic worker only writes its ``turn()``.
- ``ThreadWorker`` runs a loop that waits on its own queue or socket (uplink,
  outbox writer, control, verification, cameras, serial buses, inference): an
  exception that escapes the loop is logged and counted and the loop is entered
  again after a pause, and ``alive()`` also asks the owner's heartbeat when it
  has one, so a wedged loop makes the agent unhealthy.

docs/architecture.md has the table of workers.
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


class ThreadWorker:
    """``run()`` on a named thread until ``stop_event`` is set; re-entered if it raises.

    ``run`` must return once ``stop_event`` is set; ``stop()`` sets it, calls
    ``wake`` (so a loop blocked on a queue or socket notices), then joins.
    """

    def __init__(
        self,
        name: str,
        run: Callable[[], None],
        stop_event: threading.Event,
        *,
        heartbeat: Heartbeat | None = None,
        wake: Callable[[], None] | None = None,
        restart_pause_s: float = 1.0,
    ):
        self.name = name
        self.state = WorkerState()
        self._run_loop = run
        self._stop = stop_event
        self._heartbeat = heartbeat
        self._wake = wake
        self._pause = restart_pause_s
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)

    @property
    def started(self) -> bool:
        return self._thread.ident is not None

    def start(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.beat()
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._wake is not None:
            self._wake()
        self.join(timeout)

    def join(self, timeout: float = 2.0) -> None:
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def is_running(self) -> bool:
        return self._thread.is_alive()

    def alive(self) -> bool:
        if self._stop.is_set() or not self.started:
            return True  # not started yet, or stopping: not a failure
        beating = self._heartbeat is None or self._heartbeat.alive()
        return self._thread.is_alive() and beating

    def _main(self) -> None:
        while not self._stop.is_set():
            try:
                self._run_loop()
                return
            except Exception as exc:  # a loop that escapes its own guards is restarted
                self.state.errors += 1
                self.state.last_error = f"{type(exc).__name__}: {exc}"
                log.exception(
                    "worker loop failed; restarting it",
                    extra={"fields": {"worker": self.name, "error": str(exc)}},
                )
                if self._stop.wait(self._pause):
                    return
