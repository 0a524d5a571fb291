"""Crossing frames made of real pictures: a person walks across a real road.

The real person from ``squat.bmp`` walks across the real road frame
``traffic_0001.bmp`` (two parked cars) and passes behind a pole, which hides
him for a fixed *time* (not a fixed number of frames), as a lamp post or a
catenary mast does at a level crossing. Frame ``i`` at ``fps`` is computed on
demand, colour or grey (an IR camera at night).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from shaobing.agent.detection.config import CameraConfig, CameraZone, DetectorConfig
from shaobing.agent.detection.detector import Detector
from shaobing.agent.detection.pipeline import INTRUSION, DetectionPipeline

from .camera import _PERSON_CROP, _read, default_media_dir

# The guarded strip of the crossing: the middle of the road, alarms for people only
# (the parked cars stand in it and must not alarm, nor keep inference running).
CROSSING_ZONE = CameraZone(
    id="track-1", polygon=[(0.3, 0.0), (0.7, 0.0), (0.7, 1.0), (0.3, 1.0)], labels=["person"]
)


@dataclass(frozen=True)
class CrossingSpec:
    fps: float = 15.0
    width: int = 640
    height: int = 360
    walk_s: float = 4.7  # time the person takes to cross the frame
    before_s: float = 1.5  # empty road before the person appears
    after_s: float = 3.0  # empty road after the person left
    pole_x: float = 0.52  # relative left edge of the pole
    pole_hides_s: float = 0.45  # how long the pole hides the whole person
    ir: bool = False


class CrossingScene:
    def __init__(self, spec: CrossingSpec, media_dir: Path | None = None) -> None:
        self.spec = spec
        media = media_dir or default_media_dir()
        w, h = spec.width, spec.height
        self.road = cv2.resize(_read(media / "traffic_0001.bmp"), (w, h))
        src = _read(media / "squat.bmp")
        sh, sw = src.shape[:2]
        x0, y0, x1, y1 = _PERSON_CROP
        crop = src[round(y0 * sh) : round(y1 * sh), round(x0 * sw) : round(x1 * sw)]
        ph = int(h * 0.6)
        self.person = cv2.resize(crop, (round(crop.shape[1] * ph / crop.shape[0]), ph))
        pw = self.person.shape[1]
        # Pixels per second of the walk; the pole is as wide as the person plus
        # what he walks in pole_hides_s, so he is fully hidden for that long.
        self.speed = (w + pw) / spec.walk_s
        self.pole = (
            round(spec.pole_x * w),
            round(spec.pole_x * w + pw + self.speed * spec.pole_hides_s),
        )

    @property
    def length(self) -> int:
        s = self.spec
        return round((s.before_s + s.walk_s + s.after_s) * s.fps)

    def centre_passes(self, x_rel: float) -> float:
        """Seconds from the first frame until the person's centre passes ``x_rel`` of the width."""
        pw = self.person.shape[1]
        return self.spec.before_s + (x_rel * self.spec.width + pw / 2) / self.speed

    def walking(self, i: int) -> bool:
        t = i / self.spec.fps - self.spec.before_s
        return 0 <= t < self.spec.walk_s

    def frame(self, i: int) -> np.ndarray:
        s = self.spec
        img = self.road.copy()
        t = i / s.fps - s.before_s
        if 0 <= t < s.walk_s:
            ph, pw = self.person.shape[:2]
            x = round(t * self.speed) - pw  # enters from the left edge
            y = s.height - ph - s.height // 20
            a, b = max(0, x), min(s.width, x + pw)
            if b > a:
                img[y : y + ph, a:b] = self.person[:, a - x : b - x]
        p0, p1 = self.pole
        img[:, p0:p1] = (70, 72, 75)
        return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if s.ir else img


@dataclass
class CrossingRun:
    """What the pipeline raised for one crossing, with the scene's clock times."""

    scene: CrossingScene
    events: list[tuple[float, dict]] = field(default_factory=list)  # (seconds, event data)
    inferences: int = 0
    idle: int = 0

    @property
    def starts(self) -> int:
        return sum(1 for _, e in self.events if e["phase"] == "start")

    def phases(self) -> list[str]:
        return [e["phase"] for _, e in self.events]


class _Recorder:
    def __init__(self, clock: _SceneClock) -> None:
        self.clock = clock
        self.events: list[tuple[float, dict]] = []

    def emit(self, type, source, **kw):
        if type == INTRUSION:
            self.events.append((self.clock.t, kw["data"]))


class _SceneClock:
    t = 0.0

    def __call__(self) -> float:
        return self.t


def run_crossing(
    detector: Detector,
    spec: CrossingSpec,
    cfg: DetectorConfig | None = None,
    zone: CameraZone = CROSSING_ZONE,
) -> CrossingRun:
    """Feed one crossing frame by frame through a fresh pipeline (motion gate included).

    The pipeline's clock advances 1/fps per frame, so the result does not
    depend on this machine's speed, only on the frames and the model.
    """
    scene = CrossingScene(spec)
    clock = _SceneClock()
    sink = _Recorder(clock)
    cam = CameraConfig(id="cam", source="sim:person-crossing", zones=[zone])
    pipe = DetectionPipeline(detector, [cam], sink, cfg or DetectorConfig(), clock=clock)
    c = pipe.camera("cam")
    for i in range(scene.length):
        clock.t = i / spec.fps
        pipe.offer(c, scene.frame(i))
    return CrossingRun(scene, sink.events, c.inferences, c.idle)
