"""Video verification of alarms: ask the zone's cameras, run the detector, report the verdict.

The camera pipeline implements ``Verifier``; this module only schedules the
work and turns the answer into a ``status.verification`` event tied to the
alarm by ``data.alarm_id``. The alarm itself has been committed (and is on its
way to the platform) before a job is submitted here: verification never delays
an alarm.

One worker thread runs jobs in order, because a Pi runs one detector at a
time anyway. Each job has a deadline measured from the alarm; a watchdog
timer reports ``unverified`` (reason ``timeout``) at the deadline if the
verifier has not answered, and a late answer is then discarded, so a stuck
camera cannot leave an alarm without a verdict.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from shaobing.agent.config import VerifyConfig
from shaobing.core.events import Event, EventSink, Severity, Source
from shaobing.core.worker import ThreadWorker

log = logging.getLogger("shaobing.verification")

SOURCE = Source(kind="agent", id="verification")
# Added to the deadline before the watchdog speaks, so a verifier that honours
# the deadline exactly still wins the race.
GRACE_S = 0.5


@dataclass(frozen=True)
class VerificationResult:
    """What the detector saw in the burst. ``labels[i]`` scored ``scores[i]``."""

    labels: tuple[str, ...]
    scores: tuple[float, ...]
    snapshot_jpeg: bytes | None = None
    camera_id: str | None = None  # the camera the snapshot comes from
    frames: int = 0  # frames actually analysed


class CameraDown(Exception):
    """The camera is in an outage: its last frame is from before it and must not pass as now."""

    def __init__(self, camera_id: str, down_s: float) -> None:
        super().__init__(f"camera {camera_id} is down (for {down_s:.0f} s)")
        self.camera_id = camera_id
        self.down_s = down_s


class Verifier(Protocol):
    """Implemented by the camera pipeline (agent/detection, not merged yet)."""

    def verify(
        self, camera_ids: Sequence[str], deadline: float, frames: int = 5
    ) -> VerificationResult | None:
        """Grab a burst from the cameras and detect; ``deadline`` is a time.monotonic() value.

        Returns None when no frame could be grabbed before the deadline.
        """
        ...

    def snapshot(self, camera_id: str, deadline: float) -> bytes:
        """One JPEG from the camera now. KeyError (unknown camera), TimeoutError, CameraDown."""
        ...


@dataclass
class _Job:
    alarm: Event
    cameras: tuple[str, ...]
    config: VerifyConfig
    deadline: float
    submitted_ns: int
    done: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    timer: threading.Timer | None = None


@dataclass
class VerificationStats:
    verified: int = 0
    unverified: int = 0
    last_latency_ms: int | None = None


class VerificationWorker:
    def __init__(
        self,
        sink: EventSink,
        verifier: Verifier | None,
        max_queue: int = 16,
        flush: Callable[[], None] | None = None,
    ):
        self._sink = sink
        # The outbox holds status rows up to a second to share an fsync; a
        # verdict is worth that fsync: it is what the operator waits for.
        self._flush = flush
        self.verifier = verifier
        self.stats = VerificationStats()
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=max_queue)
        self._stopping = threading.Event()
        self.worker = ThreadWorker(
            "verification", self._run, self._stopping, wake=lambda: self._queue.put(None)
        )
        self._current: _Job | None = None

    def start(self) -> None:
        self.worker.start()

    def alive(self) -> bool:
        # Not a heartbeat: a job may legitimately block until its deadline.
        return self.worker.alive()

    def stop(self, timeout: float = 3.0) -> None:
        """Answer every waiting job with ``shutdown`` so no alarm is left without a verdict."""
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                self._finish(job, None, "shutdown")
        if self._current is not None:
            self._finish(self._current, None, "shutdown")
        self.worker.stop(timeout)

    def submit(self, alarm: Event, cameras: Sequence[str], config: VerifyConfig) -> None:
        """Called on the driver's thread: never blocks."""
        job = _Job(
            alarm=alarm,
            cameras=tuple(cameras),
            config=config,
            deadline=time.monotonic() + config.timeout_s,
            submitted_ns=time.monotonic_ns(),
        )
        job.timer = threading.Timer(config.timeout_s + GRACE_S, self._expire, (job,))
        job.timer.daemon = True
        job.timer.name = "verification-watchdog"
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            self._finish(job, None, "busy")
            return
        job.timer.start()

    def _expire(self, job: _Job) -> None:
        self._finish(job, None, "timeout")

    def _run(self) -> None:
        while not self._stopping.is_set():
            job = self._queue.get()
            if job is None:
                continue
            if job.done:
                continue
            self._current = job
            if self.verifier is None:
                self._finish(job, None, "no_verifier")
                continue
            if time.monotonic() >= job.deadline:
                self._finish(job, None, "timeout")
                continue
            try:
                result = self.verifier.verify(job.cameras, job.deadline, frames=job.config.frames)
            except Exception as exc:
                log.exception("verifier failed", extra={"fields": {"alarm_id": job.alarm.id}})
                self._finish(job, None, f"error: {type(exc).__name__}")
                self._current = None
                continue
            self._finish(job, result, "no_frames" if result is None else None)
            self._current = None

    def _finish(self, job: _Job, result: VerificationResult | None, reason: str | None) -> None:
        with job.lock:
            if job.done:
                return  # the watchdog (or the verifier) already answered
            job.done = True
        if job.timer is not None:
            job.timer.cancel()
        cfg = job.config
        hits = []
        if result is not None:
            hits = [
                (label, score)
                for label, score in zip(result.labels, result.scores, strict=False)
                if label in cfg.labels and score >= cfg.min_score
            ]
        verified = bool(hits)
        if result is not None and not verified:
            reason = "nothing_of_interest"
        latency_ms = max(0, (time.monotonic_ns() - job.alarm.mono_ns) // 1_000_000)
        snapshot = result.snapshot_jpeg if (verified and result is not None) else None
        data = {
            "alarm_id": job.alarm.id,
            "alarm_type": job.alarm.type,
            "result": "verified" if verified else "unverified",
            "reason": reason,
            "labels": [label for label, _ in hits],
            "scores": [round(float(score), 4) for _, score in hits],
            "cameras": list(job.cameras),
            "camera": result.camera_id if result is not None else None,
            "frames": result.frames if result is not None else 0,
            "snapshot": snapshot is not None,
            "latency_ms": latency_ms,
        }
        severity = job.alarm.severity if verified else Severity.INFO
        zone = job.alarm.zone.id if job.alarm.zone else None
        try:
            self._sink.emit(
                "status.verification",
                SOURCE,
                zone=zone,
                data=data,
                severity=severity,
                attachment=snapshot,
            )
            if self._flush is not None:
                self._flush()
        except Exception:
            log.exception("could not record verification", extra={"fields": data})
            return
        if verified:
            self.stats.verified += 1
        else:
            self.stats.unverified += 1
        self.stats.last_latency_ms = latency_ms
