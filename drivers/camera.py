"""Camera driver: one capture thread per camera, keeping only the latest frame.

Capture never waits for inference: a frame not taken before the next one
arrives is dropped and counted, so memory stays flat however slow the
detector is. A camera that cannot be opened or stops delivering raises
``fault.camera`` once, is reopened with exponential backoff, and a
``fault.camera`` with ``state: recovered`` follows when frames return.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
from tenacity import Retrying, retry_if_exception_type, wait_exponential

from shaobing.core.events import EventSink, Severity, Source, opened_before
from shaobing.core.redaction import redact_text
from shaobing.core.worker import ThreadWorker

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


class FrameSource(Protocol):
    """The reading surface of ``cv2.VideoCapture``, which all sources share.

    A source that also has ``grab()`` and ``retrieve()`` (``cv2.VideoCapture``:
    RTSP, V4L2, files) is read at the camera's detection rate: every frame is
    grabbed (the stream must be drained and H.264 decoded in order) but only
    the frames wanted are converted to BGR by ``retrieve()``. Sources without
    them (image directories, the simulator) pace themselves at their ``fps``.
    """

    def isOpened(self) -> bool: ...
    def read(self) -> tuple[bool, np.ndarray | None]: ...
    def release(self) -> None: ...


class CameraError(RuntimeError):
    pass


class _Stopped(Exception):
    pass


def redact(source: str) -> str:
    """Camera URLs carry passwords (rtsp://admin:pw@...): never put them in events."""
    return redact_text(source)


class ImageDirSource:
    """A directory of pictures (or one picture) played as a camera at ``fps``."""

    def __init__(self, path: Path, fps: float = 5.0, loop: bool = True) -> None:
        files = [path] if path.is_file() else sorted(path.iterdir())
        self.files = [f for f in files if f.suffix.lower() in IMAGE_SUFFIXES]
        self.period = 1.0 / fps
        self.loop = loop
        self.index = 0
        self._next = time.monotonic()

    def isOpened(self) -> bool:
        return bool(self.files)

    def read(self) -> tuple[bool, np.ndarray | None]:
        if not self.files or (not self.loop and self.index >= len(self.files)):
            return False, None
        delay = self._next - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self._next = max(self._next + self.period, time.monotonic() - self.period)
        img = cv2.imread(str(self.files[self.index % len(self.files)]), cv2.IMREAD_UNCHANGED)
        self.index += 1
        return img is not None, img

    def release(self) -> None:
        self.files = []


class PacedVideo:
    """A video file read at its own frame rate, as a camera would deliver it."""

    def __init__(self, path: Path, loop: bool) -> None:
        self.cap = cv2.VideoCapture(str(path))
        fps = self.cap.get(cv2.CAP_PROP_FPS) or 0.0
        self.period = 1.0 / fps if 0 < fps < 240 else 1.0 / 25
        self.loop = loop
        self._next = time.monotonic()

    def isOpened(self) -> bool:
        return self.cap.isOpened()

    def read(self) -> tuple[bool, np.ndarray | None]:
        delay = self._next - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self._next = max(self._next + self.period, time.monotonic() - self.period)
        ok, img = self.cap.read()
        if not ok and self.loop:
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, img = self.cap.read()
        return ok, img

    def release(self) -> None:
        self.cap.release()


# Sources served by a layer above the drivers, by URL scheme: the simulator's
# "sim:person-crossing" scenes. The command line passes them in (drivers never
# import the simulator), so a box's `shaobing run` opens only what it was given.
SourceSchemes = Mapping[str, Callable[[str], Callable[[], FrameSource]]]


def source_opener(
    source: str | int,
    *,
    fps: float = 5.0,
    loop: bool = True,
    timeout_s: float = 5.0,
    schemes: SourceSchemes | None = None,
) -> Callable[[], FrameSource]:
    """Turn a configured source into a function that opens it (called on every retry)."""
    text = str(source)
    scheme = text.split(":", 1)[0] if ":" in text else ""
    if schemes and scheme in schemes:
        return schemes[scheme](text)
    if scheme == "sim":
        # Opened, and failing, like any camera: a fault event names it, the agent runs on.
        def unavailable() -> FrameSource:
            raise ValueError(f"{text}: simulated cameras exist only under the simulator")

        return unavailable
    if text.isdigit() or text.startswith("/dev/video"):
        dev: str | int = int(text) if text.isdigit() else text
        return lambda: cv2.VideoCapture(dev, cv2.CAP_V4L2)
    if re.match(r"^(rtsp|rtsps|rtmp|http|https)://", text):
        ms = int(timeout_s * 1000)
        # Without these a dead RTSP camera blocks read() for ffmpeg's default 30 s.
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
        return lambda: cv2.VideoCapture(text, cv2.CAP_FFMPEG, params)
    path = Path(text)
    if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES:
        return lambda: ImageDirSource(path, fps, loop)
    return lambda: PacedVideo(path, loop)


@dataclass(frozen=True, slots=True)
class Frame:
    seq: int
    mono: float
    image: np.ndarray


class LatestFrame:
    """A one-frame slot: a new frame replaces an untaken one, which counts as dropped."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._frame: Frame | None = None
        self._taken = True
        # Separate from _lock: a waiter holds it across its check and wait, so
        # the notify of a frame put in between cannot be missed.
        self.arrived = threading.Condition()
        self.captured = 0
        self.dropped = 0

    def put(self, image: np.ndarray, mono: float | None = None) -> None:
        with self._lock:
            if not self._taken:
                self.dropped += 1
            self.captured += 1
            self._frame = Frame(self.captured, time.monotonic() if mono is None else mono, image)
            self._taken = False
        with self.arrived:
            self.arrived.notify_all()

    def take(self) -> Frame | None:
        with self._lock:
            if self._taken:
                return None
            self._taken = True
            return self._frame

    def latest(self) -> Frame | None:
        """The newest frame, taken or not, without taking it (video verification reads it)."""
        with self._lock:
            return self._frame


@dataclass(frozen=True, slots=True)
class CameraStats:
    id: str
    state: str
    captured: int
    dropped: int
    capture_fps: float
    reconnects: int
    grabbed: int = 0  # frames read from the stream; captured: those converted and offered


class Camera:
    """Capture thread for one camera; the detection pipeline takes frames from it."""

    def __init__(
        self,
        cam_id: str,
        open_source: Callable[[], FrameSource],
        sink: EventSink,
        *,
        describe: str = "",
        backoff_min_s: float = 1.0,
        backoff_max_s: float = 60.0,
        on_frame: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        stale_read_s: float | None = None,
        detect_fps: float | None = None,
        role: str = "detect",
        on_request: bool = False,
        on_demand: bool = False,
        linger_s: float = 30.0,
    ) -> None:
        self.id = cam_id
        # Frames a grab/retrieve source converts: at most detect_fps a second
        # (None: every one), or (on_request) only those asked for by request().
        self._period = 1.0 / detect_fps if detect_fps else 0.0
        self._next_due = 0.0
        self.role = role
        self._on_request = on_request
        self._wanted = threading.Event()
        # on_demand: opened by wake() and closed after linger_s without one.
        self._on_demand = on_demand
        self._linger_s = linger_s
        self._woken = threading.Event()
        self._last_wake = 0.0
        self.grabbed = 0
        self._open = open_source
        self._sink = sink
        self._describe = redact(describe)
        self._source = Source(kind="camera", id=cam_id)
        self._backoff = wait_exponential(
            multiplier=backoff_min_s, min=backoff_min_s, max=backoff_max_s
        )
        self._on_frame = on_frame or (lambda: None)
        self._clock = clock
        # A read() that blocked this long hit the stream's read timeout; what
        # OpenCV returns then is a frame its decoder buffered before the stall.
        self._stale_read_s = stale_read_s
        self.stale = 0
        self.slot = LatestFrame()
        self.state = "starting"
        # Capture thread and the stall watchdog (inference thread) both change state.
        self._state_lock = threading.Lock()
        self._last_frame = clock()
        self._down_since = 0.0
        self._framed_once = False
        self.reconnects = 0
        self._stop = threading.Event()
        self.worker: ThreadWorker | None = None
        self._fps_window: deque[float] = deque(maxlen=30)

    def start(self) -> None:
        self.worker = ThreadWorker(f"camera-{self.id}", self._run, self._stop, wake=self._woken.set)
        self.worker.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._woken.set()
        if self.worker is not None:
            self.worker.join(timeout)

    def take(self) -> Frame | None:
        return self.slot.take()

    def latest(self) -> Frame | None:
        return self.slot.latest()

    def wake(self) -> None:
        """An on-demand stream: open now (if closed) and stay open ``linger_s`` more."""
        self._last_wake = self._clock()
        self._woken.set()

    def request(self, timeout_s: float) -> Frame | None:
        """A frame converted after this call, or None if none came within ``timeout_s``.

        For a stream read on request (a snapshot stream): the capture thread
        keeps grabbing and converts the next frame only when asked.
        """
        self.wake()
        before = self.slot.latest()
        seq = before.seq if before else 0
        deadline = time.monotonic() + timeout_s
        self._wanted.set()
        with self.slot.arrived:
            while True:
                frame = self.slot.latest()
                if frame is not None and frame.seq > seq:
                    return frame
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.slot.arrived.wait(left)

    def down_for(self) -> float | None:
        """Seconds since the outage began, or None while the camera is not down."""
        with self._state_lock:
            return self._clock() - self._down_since if self.state == "down" else None

    def stats(self) -> CameraStats:
        with self._state_lock:
            window = list(self._fps_window)
        fps = (len(window) - 1) / (window[-1] - window[0]) if len(window) > 1 else 0.0
        if window and self._clock() - window[-1] > 2.0:
            fps = 0.0
        return CameraStats(
            self.id, self.state, self.slot.captured, self.slot.dropped, fps, self.reconnects,
            self.grabbed,
        )  # fmt: skip

    def _sleep(self, seconds: float) -> None:
        if self._stop.wait(seconds):
            raise _Stopped

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if self._on_demand:
                    self._woken.wait()
                    if self._stop.is_set():
                        break
                # A fresh Retrying per outage: backoff restarts small after frames flowed.
                for attempt in Retrying(
                    wait=self._backoff,
                    retry=retry_if_exception_type(CameraError),
                    sleep=self._sleep,
                    reraise=True,
                ):
                    with attempt:
                        self._session()
        except _Stopped:
            pass

    def _session(self) -> None:
        """Open, then read until the source fails; raises CameraError if no frame came."""
        if self._stop.is_set():
            raise _Stopped
        try:
            src = self._open()
        except Exception as exc:  # any backend error is a camera fault, not a crash
            reason = redact_text(str(exc))  # backends put the URL, password and all, in errors
            self._down(f"open failed: {reason}")
            raise CameraError(reason) from None
        try:
            if not src.isOpened():
                self._down("cannot open")
                raise CameraError("cannot open")
            grab = getattr(src, "grab", None)
            retrieve = getattr(src, "retrieve", None)
            split = callable(grab) and callable(retrieve)
            delivered = False
            while not self._stop.is_set():
                if self._idle_too_long():
                    self._close_on_demand()
                    return
                asked = self._clock()
                if split:
                    ok, image = grab(), None
                else:
                    ok, image = src.read()
                blocked_s = self._clock() - asked
                if not ok or (not split and (image is None or image.size == 0)):
                    self._down("stopped delivering frames" if delivered else "no frames")
                    if delivered:
                        return
                    raise CameraError("no frames")
                if self._stale_read_s is not None and blocked_s >= self._stale_read_s:
                    # Not fresh: neither detection nor the stall timer may count it.
                    self.stale += 1
                    continue
                self.grabbed += 1
                if split:
                    if not self._due():
                        self._frame_arrived(None)  # a fresh frame, just not one to convert
                        continue
                    ok, image = retrieve()
                    if not ok or image is None or image.size == 0:
                        # Grabbed but undecodable: a corrupt stream, not a live camera.
                        self._down("frames cannot be decoded")
                        raise CameraError("frames cannot be decoded")
                delivered = True
                self._frame_arrived(image)
                self._on_frame()
        finally:
            src.release()

    def _due(self) -> bool:
        """Whether the frame just grabbed is one to convert (the latest wins)."""
        if self._on_request:
            if not self._wanted.is_set():
                return False
            self._wanted.clear()
            return True
        if not self._period:
            return True
        now = self._clock()
        if now < self._next_due:
            return False
        # Keep the cadence; after a slow spell (or at the start) restart it, owing nothing.
        behind = now - self._next_due >= self._period
        self._next_due = now + self._period if behind else self._next_due + self._period
        return True

    def _idle_too_long(self) -> bool:
        # A request still waiting is demand too (opening can outlast linger_s).
        return (
            self._on_demand
            and not self._wanted.is_set()
            and self._clock() - self._last_wake > self._linger_s
        )

    def _close_on_demand(self) -> None:
        self._woken.clear()
        if self._clock() - self._last_wake <= self._linger_s:
            self._woken.set()  # a wake() raced with the close: stay open
            return
        with self._state_lock:
            if self.state == "up":
                self.state = "idle"

    def _frame_arrived(self, image: np.ndarray | None) -> None:
        # The frame's time and the state change share one critical section: a
        # stall check in between would see "up" with the pre-outage timestamp
        # and report a spurious down (issue 11 item 6).
        with self._state_lock:
            now = self._clock()
            if image is not None:
                self.slot.put(image, now)
            self._last_frame = now
            self._fps_window.append(now)
            was_down, self.state = self.state == "down", "up"
            first, self._framed_once = not self._framed_once, True
            down_s = now - self._down_since
        if was_down:
            self._recovered(down_s)
        elif first and opened_before(self._sink, self._source, None, "fault.camera"):
            # Down when an earlier run ended, delivering now: that outage ends here.
            self._sink.emit(
                "fault.camera",
                self._source,
                data={"state": "recovered", "source": self._describe, "at_start": True},
                severity=Severity.INFO,
            )

    def check_stall(self, timeout_s: float) -> None:
        """Called from outside: a read() that blocks (a hung stream) raises the fault too."""
        with self._state_lock:
            stalled = self.state == "up" and self._clock() - self._last_frame > timeout_s
            # Decide and mark down together, so a frame arriving meanwhile wins.
            if stalled:
                self._mark_down()
        if stalled:
            self._report_down(f"no frame for {timeout_s:g} s")

    def _mark_down(self) -> None:
        self.state = "down"
        self._down_since = self._clock()

    def _down(self, reason: str) -> None:
        with self._state_lock:
            if self.state == "down":
                return
            self._mark_down()
        self._report_down(reason)

    def _report_down(self, reason: str) -> None:
        self._sink.emit(
            "fault.camera",
            Source(kind="camera", id=self.id),
            data={"state": "down", "reason": reason, "source": self._describe, "stream": self.role},
        )

    def _recovered(self, down_s: float) -> None:
        self.reconnects += 1
        self._sink.emit(
            "fault.camera",
            Source(kind="camera", id=self.id),
            data={
                "state": "recovered",
                "down_s": round(down_s, 3),
                "source": self._describe,
                "stream": self.role,
            },
            severity=Severity.INFO,
        )
