"""The preprocessing worker: the next round's frames, gathered while this round infers.

One request at a time: the inference thread asks for the next round when it
starts one (``request``), says when its round is over (``round_done``: if no
frame has arrived by then, the worker stops waiting for one and answers an
empty round), and collects the answer at the start of the next round
(``take``). The worker runs on the shared lifecycle (``core/worker.py``);
a round that raises (a bad frame) is counted and logged in the worker's state
and re-raised by ``take`` on the inference thread, which counts it as a
failed step, as when the preparation ran there.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from shaobing.core.worker import ThreadWorker, WorkerState

log = logging.getLogger(__name__)

T = TypeVar("T")

# How long the worker waits for a frame before looking again on its own: a
# camera whose callback was missed costs at most this much of a round.
_POLL_S = 1.0


class Lookahead(Generic[T]):
    def __init__(self, gather: Callable[[], list[T]], name: str = "preprocess") -> None:
        self._gather = gather
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._requested = False
        self._pending = False  # requested and not yet taken
        self._round_done = False
        self._poked = False
        self._answer: list[T] | Exception | None = None
        self.worker = ThreadWorker(name, self._run, self._stop, wake=self._wake)

    @property
    def state(self) -> WorkerState:
        return self.worker.state

    def alive(self) -> bool:
        return self.worker.alive()

    def stop(self, timeout: float = 2.0) -> None:
        self.worker.stop(timeout)
        with self._cond:
            self._pending = False
            self._answer = None

    # -- the inference thread's side ------------------------------------------------

    @property
    def pending(self) -> bool:
        return self._pending

    def request(self) -> None:
        """Start gathering the next round; the worker starts with the first request."""
        if not self.worker.started:
            self.worker.start()
        with self._cond:
            self._requested, self._pending = True, True
            self._round_done, self._answer = False, None
            self._cond.notify_all()

    def round_done(self) -> None:
        with self._cond:
            self._round_done = True
            self._cond.notify_all()

    def poke(self) -> None:
        """A new frame arrived (a camera's callback thread)."""
        with self._cond:
            self._poked = True
            self._cond.notify_all()

    def take(self) -> list[T]:
        """The requested round: waits for the worker; its exception is raised here."""
        with self._cond:
            while self._answer is None and not self._stop.is_set():
                self._cond.wait(_POLL_S)
            answer, self._answer, self._pending = self._answer, None, False
        if isinstance(answer, Exception):
            raise answer
        return answer or []

    # -- the worker's side ------------------------------------------------------------

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._requested and not self._stop.is_set():
                    self._cond.wait()
                if self._stop.is_set():
                    return
                self._requested = False
            answer = self._round()
            with self._cond:
                self._answer = answer
                self._cond.notify_all()

    def _round(self) -> list[T] | Exception:
        try:
            while True:
                with self._cond:
                    self._poked = False  # before gathering: a frame arriving after it pokes again
                ready = self._gather()
                with self._cond:
                    if ready or self._round_done or self._stop.is_set():
                        return ready
                    if not self._poked:
                        self._cond.wait(_POLL_S)
        except Exception as exc:  # a bad frame: counted here, raised on the inference thread
            self.worker.state.errors += 1
            self.worker.state.last_error = f"{type(exc).__name__}: {exc}"
            log.warning(
                "preprocessing round failed",
                extra={"fields": {"worker": self.worker.name, "error": str(exc)}},
            )
            return exc
        finally:
            self.worker.state.turns += 1
