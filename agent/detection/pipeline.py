"""Cameras -> motion gate -> shared detector -> zones -> tracker -> intrusion events.

Threads: one capture thread per camera (``drivers.camera``), ONE inference
thread that owns the interpreter and every tracker, and one preprocessing
thread that gates and prepares the next round's frames while ``invoke()``
runs on this round's (so preprocessing overlaps inference). The interpreter is the
scarce resource and runs its own ``num_threads`` worker threads inside
``invoke()`` with the GIL released, so a second inference thread would only
contend for the same cores; capture threads meanwhile decode frames (OpenCV
also releases the GIL) and overwrite their one-frame slot. See docs/inference.md.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

from shaobing.core.events import EventSink, Severity, Source
from shaobing.core.watchdog import Heartbeat
from shaobing.core.worker import ThreadWorker
from shaobing.drivers.camera import Camera, FrameSource, SourceSchemes, source_opener

from .config import CameraConfig, DetectorConfig
from .detector import Detector
from .lookahead import Lookahead
from .motion import MotionGate
from .preprocess import Prepared
from .snapshot import snapshot
from .tracker import IouTracker, Track
from .types import Box, Detection
from .zones import CameraZones

log = logging.getLogger(__name__)

INTRUSION = "alarm.intrusion"


@dataclass(frozen=True, slots=True)
class CameraPipelineStats:
    id: str
    state: str
    captured: int
    capture_fps: float
    dropped: int  # frames replaced before the inference thread looked at them
    idle: int  # frames the motion gate judged not worth an inference
    inferences: int
    infer_fps: float
    last_infer_ms: float
    active_tracks: int
    stationary_tracks: int  # parked, re-checked only at an interval (docs/inference.md)
    grabbed: int = 0  # frames read from the detect stream (captured: converted at detect.fps)
    snapshot_state: str | None = None  # the snapshot stream's, when the camera has one


@dataclass(frozen=True, slots=True)
class TrackView:
    id: int
    label: str
    score: float
    box: Box
    alarm_zone: str | None


@dataclass(frozen=True, slots=True)
class CameraView:
    """What the commissioning console shows of one camera (``DetectionPipeline.view``)."""

    cfg: CameraConfig
    image: np.ndarray | None  # the newest frame; never written to, shared with the pipeline
    tracks: tuple[TrackView, ...]


class _Cam:
    """Everything the inference thread keeps for one camera."""

    def __init__(
        self,
        cfg: CameraConfig,
        camera: Camera,
        det_cfg: DetectorConfig,
        snap: Camera | None = None,
    ) -> None:
        self.cfg = cfg
        self.camera = camera
        # The snapshot stream (main stream), when the camera has one.
        self.snap = snap
        self.det_cfg = det_cfg
        self.zones = CameraZones(cfg, det_cfg.score_threshold)
        self.gate = MotionGate(cfg.motion, self.zones.motion_mask())
        self.tracker = IouTracker(det_cfg.tracker)
        self.floor = min([det_cfg.score_threshold] + [f.min_score for f in cfg.filters.values()])
        self.last_served = 0.0
        self.superseded = 0
        self.idle = 0
        self.inferences = 0
        self.last_infer_ms = 0.0
        self.infer_times: deque[float] = deque(maxlen=20)
        # Written by the inference thread after each inference, read by the
        # preprocessing thread: do this camera's tracks need inference even
        # without motion? (A bool swap; one round of lag is harmless.)
        self.tracks_need_inference = False
        self.recheck_at: float | None = None  # a stationary alarm's next check


@dataclass(frozen=True, slots=True)
class _Ready:
    cam: _Cam
    image: np.ndarray
    prepared: Prepared | None


class DetectionPipeline:
    def __init__(
        self,
        detector: Detector,
        cameras: Sequence[CameraConfig],
        sink: EventSink,
        cfg: DetectorConfig,
        *,
        openers: Mapping[str, Callable[[], FrameSource]] | None = None,
        schemes: SourceSchemes | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.detector = detector
        self.sink = sink
        self.cfg = cfg
        self.clock = clock
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.worker: ThreadWorker | None = None
        # One round is (cameras with motion) x (one inference), seconds at most
        # on a Pi; a minute without a beat means an invoke() that never returns.
        self.heartbeat = Heartbeat(60.0)
        # What the model watch (agent/model_updates.py) judges a new model by.
        self.faults = 0  # inference steps in a row that raised
        self.recent_ms: deque[float] = deque(maxlen=64)
        self._cams: list[_Cam] = []
        # The preprocessing worker, started by the first round that finds frames.
        self.lookahead: Lookahead[_Ready] | None = None
        for cam_cfg in cameras:
            if not cam_cfg.enabled:
                continue
            opener = (openers or {}).get(cam_cfg.id) or source_opener(
                cam_cfg.source,
                fps=cam_cfg.fps,
                loop=cam_cfg.loop,
                timeout_s=cam_cfg.open_timeout_s,
                schemes=schemes,
            )
            camera = Camera(
                cam_cfg.id,
                opener,
                sink,
                describe=cam_cfg.source,
                backoff_min_s=cam_cfg.backoff_min_s,
                backoff_max_s=cam_cfg.backoff_max_s,
                on_frame=self._frame_arrived,
                # Reads come back near the read timeout only with pre-stall buffered frames.
                stale_read_s=0.9 * cam_cfg.open_timeout_s,
                detect_fps=cam_cfg.detect.fps,
            )
            self._cams.append(_Cam(cam_cfg, camera, cfg, _snapshot_camera(cam_cfg, sink, schemes)))

    @classmethod
    def from_config(
        cls,
        det_cfg: DetectorConfig,
        cameras: Sequence[CameraConfig],
        sink: EventSink,
        schemes: SourceSchemes | None = None,
    ) -> DetectionPipeline:
        detector = Detector.from_config(det_cfg)
        return cls(detector, cameras, sink, det_cfg, schemes=schemes)

    # -- lifecycle -------------------------------------------------------------

    def start_cameras(self) -> None:
        for c in self._cams:
            c.camera.start()
            if c.snap is not None:
                c.snap.start()

    def start(self) -> None:
        self.start_cameras()
        self.worker = ThreadWorker("inference", self._run, self._stop, heartbeat=self.heartbeat)
        self.worker.start()

    def alive(self) -> bool:
        """The agent's liveness check: the inference thread runs and is not stuck
        (a stuck preprocessing worker stops it too: it waits for its answer)."""
        ahead = self.lookahead
        return (self.worker is None or self.worker.alive()) and (ahead is None or ahead.alive())

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self.lookahead is not None:
            self.lookahead.stop(timeout)  # before the join: the inference thread may wait on it
        if self.worker is not None:
            self.worker.join(timeout)
        self.lookahead = None
        for c in self._cams:
            c.camera.stop()
            if c.snap is not None:
                c.snap.stop()
            for track in c.tracker.drain():
                if track.alarm_zone is not None:
                    self._emit(c, track, "end", None, reason="shutdown")

    def _run(self) -> None:
        last_stats = self.clock()
        while not self._stop.is_set():
            self.heartbeat.beat()
            self._wake.wait(0.5)
            self._wake.clear()
            try:
                if self.step():
                    self.faults = 0
            except Exception:  # a bad frame must not kill the only inference thread
                self.faults += 1
                log.exception("inference step failed")
            if self.clock() - last_stats >= self.cfg.stats_interval_s:
                last_stats = self.clock()
                self._emit_stats()

    # -- scheduling -------------------------------------------------------------

    def step(self) -> int:
        """Serve every camera whose newest frame has motion (or tracks that need it), once.

        Cameras are served least-recently-served first, so a busy camera cannot
        starve a quiet one that just saw something: each gets one inference per
        round, and a round lasts about (cameras with motion) x (inference time).
        While this round infers, the preprocessing thread gates and prepares the
        next round's frames as soon as they arrive; when none arrived before the
        round ended (an idle scene), the next round gathers on this thread.
        """
        for c in self._cams:
            c.camera.check_stall(c.cfg.stall_timeout_s)
            if c.snap is not None:
                c.snap.check_stall(c.cfg.stall_timeout_s)
        ready: list[_Ready] = []
        ahead = self.lookahead
        if ahead is not None and ahead.pending:
            ready = ahead.take()  # a failed round (a bad frame) is not retried
        if not ready:
            ready = self.gather(prepare=False)
        if ready and not self._stop.is_set():
            if self.lookahead is None:  # made here so that step() alone (tests, bench) overlaps too
                self.lookahead = Lookahead(lambda: self.gather(prepare=True))
            self.lookahead.request()
        try:
            for r in ready:
                self.process(r.cam, r.image, r.prepared)
        finally:
            if self.lookahead is not None:
                self.lookahead.round_done()
        return len(ready)

    def _frame_arrived(self) -> None:
        self._wake.set()
        ahead = self.lookahead
        if ahead is not None:
            ahead.poke()

    def gather(self, *, prepare: bool) -> list[_Ready]:
        """Take every camera's newest frame, gate it, and prepare it for the model."""
        ready: list[_Ready] = []
        now = self.clock()
        for c in self._cams:
            frame = c.camera.take()
            if frame is None:
                continue
            if self.wants_inference(c, frame.image, now):
                if c.snap is not None:
                    c.snap.wake()  # an on-demand main stream opens while the track confirms
                prepared = self.detector.prepare(frame.image) if prepare else None
                ready.append(_Ready(c, frame.image, prepared))
            else:
                c.idle += 1
        ready.sort(key=lambda r: r.cam.last_served)
        return ready

    def wants_inference(self, c: _Cam, image: np.ndarray, now: float) -> bool:
        """The motion gate, or tracks that must be followed without motion."""
        moved = c.gate.check(image)  # always: the gate compares with the last tested frame
        if moved or c.tracks_need_inference:
            return True
        return c.recheck_at is not None and now >= c.recheck_at

    def offer(self, c: _Cam, image: np.ndarray) -> bool:
        """One frame of camera ``c`` as the scheduler sees it (gate, then infer); tests and
        benchmarks drive a camera frame by frame with this. True when inferred."""
        if not self.wants_inference(c, image, self.clock()):
            c.idle += 1
            return False
        self.process(c, image)
        return True

    # -- per frame ---------------------------------------------------------------

    def swap_detector(self, new: Detector) -> Detector:
        """Take ``new`` from the next inference on; the one in flight ends on the old.

        ``process`` reads ``self.detector`` once per frame, so the swap falls
        between two inferences of the single inference thread; tracks go on.
        """
        old, self.detector = self.detector, new
        self.faults = 0
        self.recent_ms.clear()
        return old

    def latest_frames(self) -> list[np.ndarray]:
        """The newest frame of each camera, without taking it (a candidate's test set)."""
        frames = (c.camera.latest() for c in self._cams)
        return [f.image for f in frames if f is not None]

    def camera(self, cam_id: str) -> _Cam:
        for c in self._cams:
            if c.cfg.id == cam_id:
                return c
        raise KeyError(f"no camera {cam_id!r} in the pipeline")

    # -- public views (the console reads these; nothing here waits for inference) --

    def camera_ids(self) -> list[str]:
        return [c.cfg.id for c in self._cams]

    def view(self, cam_id: str) -> CameraView:
        c = self.camera(cam_id)
        frame = c.camera.slot.latest()
        tracks = tuple(
            TrackView(t.id, t.det.label, t.det.score, t.det.box, t.alarm_zone)
            for t in list(c.tracker.tracks)
        )
        return CameraView(c.cfg, None if frame is None else frame.image, tracks)

    def reconfigure_camera(self, cfg: CameraConfig) -> None:
        """New zones, masks and filters for a running camera, without a restart.

        Each attribute is swapped whole (one reference assignment), so the
        inference thread sees either the old or the new object in each place;
        a frame served during the swap may mix them, which is harmless."""
        c = self.camera(cfg.id)
        zones = CameraZones(cfg, c.det_cfg.score_threshold)
        gate = MotionGate(cfg.motion, zones.motion_mask())
        c.cfg, c.zones, c.gate = cfg, zones, gate
        c.floor = min([c.det_cfg.score_threshold] + [f.min_score for f in cfg.filters.values()])

    def process(self, c: _Cam, image: np.ndarray, prepared: Prepared | None = None) -> None:
        """Detect, track and raise events for one frame of camera ``c``."""
        now = self.clock()
        result = self.detector.detect(image, c.floor, prepared)
        c.last_served = now
        c.inferences += 1
        c.last_infer_ms = result.invoke_s * 1000
        self.recent_ms.append(c.last_infer_ms)
        c.infer_times.append(now)
        dets = [
            d
            for d in result.detections
            if c.zones.passes(d) and not c.zones.masked(d.box.bottom_centre)
        ]
        seen, ended = c.tracker.update(dets, now)
        for track in seen:
            # The newest frame of each live track is what its snapshot shows.
            track.extra["image"] = image
            track.extra["ir"] = result.ir
            self._lifecycle(c, track, now)
        for track in ended:
            if track.alarm_zone is not None:
                self._emit(c, track, "end", None, reason="lost")
        self._plan(c, now)

    def _plan(self, c: _Cam, now: float) -> None:
        """Which of this camera's tracks need inference when nothing moves?

        A moving track that holds an alarm does (its alarm follows it, and ends
        when it is gone), and so does one standing where its label alarms but
        not yet confirmed; a stationary alarm only every
        ``stationary_interval_s`` (is it still there?). Every other object
        (parked cars in a people-only zone, a person outside every zone) waits
        for the motion gate: an idle scene with parked cars then costs what an
        empty one costs.
        """
        need, recheck = False, False
        for t in c.tracker.tracks:
            if t.alarm_zone is not None:
                if t.stationary:
                    recheck = True
                else:
                    need = True
            elif not t.stationary and c.zones.zone_of(t.det) is not None:
                need = True
        c.tracks_need_inference = need
        c.recheck_at = now + self.cfg.tracker.stationary_interval_s if recheck else None

    def _lifecycle(self, c: _Cam, t: Track, now: float) -> None:
        tcfg = self.cfg.tracker
        if not t.confirmed(now, tcfg.confirm_s):
            return
        zone = c.zones.zone_of(t.det)
        if t.alarm_zone is None:
            if zone is not None:
                t.alarm_zone, t.alarm_since, t.outside_since = zone.id, now, None
                self._emit(c, t, "start", t.extra.get("image"), reason="entered")
            return
        if zone is None:
            if t.outside_since is None:
                t.outside_since = now
            if now - t.outside_since >= tcfg.exit_after_s:
                self._emit(c, t, "end", None, reason="left_zone")
                t.alarm_zone, t.outside_since = None, None
            return
        t.outside_since = None
        interval = self.cfg.tracker.update_interval_s
        if zone.id != t.alarm_zone:
            t.alarm_zone = zone.id
            self._emit(c, t, "update", t.extra.get("image"), reason="zone_changed")
        elif interval is not None and now - t.last_event_mono >= interval:
            self._emit(c, t, "update", t.extra.get("image"), reason="still_present")

    def _emit(
        self, c: _Cam, t: Track, phase: str, image: np.ndarray | None, *, reason: str
    ) -> None:
        now = self.clock()
        det = t.det
        zone = t.alarm_zone
        data: dict[str, object] = {
            "phase": phase,
            "reason": reason,
            "track_id": t.id,
            "camera": c.cfg.id,
            "label": det.label,
            "score": round(det.score, 3),
            "max_score": round(t.best_score, 3),
            "box": det.box.as_list(),
            "box_px": list(det.box_px),
            "frame": list(det.frame_size),
            "night_ir": bool(t.extra.get("ir", False)),
        }
        if phase == "end":
            data["duration_s"] = round(now - t.alarm_since, 3)
        attachment = None
        if image is not None:
            caption = f"#{t.id} {det.label} {det.score:.2f}"
            image, shown, stream = self._snapshot_frame(c, image, det)
            attachment = snapshot(image, [shown], c.cfg.snapshot_max_bytes, [caption])
            data["snapshot_bytes"] = len(attachment)
            data["snapshot_stream"] = stream
            data["snapshot_frame"] = [image.shape[1], image.shape[0]]
        t.last_event_mono = now
        self.sink.emit(
            INTRUSION,
            Source(kind="camera", id=c.cfg.id),
            zone=zone,
            data=data,
            severity=None if phase != "end" else Severity.INFO,
            attachment=attachment,
        )

    @staticmethod
    def _snapshot_frame(
        c: _Cam, image: np.ndarray, det: Detection
    ) -> tuple[np.ndarray, Detection, str]:
        frame, (shown,), stream = snapshot_frame(c, image, [det], c.cfg.snapshot.wait_s)
        return frame, shown, stream

    # -- statistics ----------------------------------------------------------------

    def stats(self) -> list[CameraPipelineStats]:
        out = []
        now = self.clock()
        for c in self._cams:
            cs = c.camera.stats()
            times = c.infer_times
            fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
            if times and now - times[-1] > 5.0:
                fps = 0.0
            out.append(
                CameraPipelineStats(
                    id=c.cfg.id,
                    state=cs.state,
                    captured=cs.captured,
                    capture_fps=round(cs.capture_fps, 2),
                    dropped=cs.dropped + c.superseded,
                    idle=c.idle,
                    inferences=c.inferences,
                    infer_fps=round(fps, 2),
                    last_infer_ms=round(c.last_infer_ms, 2),
                    active_tracks=len(c.tracker.tracks),
                    grabbed=cs.grabbed,
                    snapshot_state=c.snap.state if c.snap is not None else None,
                    stationary_tracks=sum(t.stationary for t in c.tracker.tracks),
                )
            )
        return out

    def _emit_stats(self) -> None:
        self.sink.emit(
            "status.detection",
            Source(kind="agent", id="detection"),
            data={
                "model": str(self.detector.model.path.name),
                "runtime": self.detector.model.runtime,
                "cameras": [asdict(s) for s in self.stats()],
            },
        )


def snapshot_frame(
    c: _Cam, image: np.ndarray, dets: Sequence[Detection], wait_s: float
) -> tuple[np.ndarray, list[Detection], str]:
    """The frame a JPEG shows: the snapshot stream's when it answers within ``wait_s``.

    The boxes found on the detect stream are drawn at the same relative place
    on the main stream's frame (both streams show the same view). A snapshot
    stream that is down is not waited for: the detect frame it is, said so.
    """
    if c.snap is None or c.snap.state == "down":
        return image, list(dets), "detect"
    frame = c.snap.request(wait_s)
    if frame is None:
        return image, list(dets), "detect"
    h, w = frame.image.shape[:2]
    return frame.image, [replace(d, frame_size=(w, h)) for d in dets], "snapshot"


def _snapshot_camera(
    cfg: CameraConfig, sink: EventSink, schemes: SourceSchemes | None
) -> Camera | None:
    """The camera's snapshot stream: grabbed all along, converted only when asked."""
    snap = cfg.snapshot
    if snap.source is None:
        return None
    opener = source_opener(
        snap.source, fps=cfg.fps, loop=cfg.loop, timeout_s=cfg.open_timeout_s, schemes=schemes
    )
    return Camera(
        cfg.id,
        opener,
        sink,
        describe=snap.source,
        backoff_min_s=cfg.backoff_min_s,
        backoff_max_s=cfg.backoff_max_s,
        stale_read_s=0.9 * cfg.open_timeout_s,
        role="snapshot",
        on_request=True,
        on_demand=not snap.keep_warm,
        linger_s=snap.linger_s,
    )
