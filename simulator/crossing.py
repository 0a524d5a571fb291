"""Crossing frames made of real pictures: a person walks across a real road.

The real person from ``squat.bmp`` walks across the real road frame
``traffic_0001.bmp`` (two parked cars) and passes behind a pole, which hides
him for a fixed *time* (not a fixed number of frames), as a lamp post or a
catenary mast does at a level crossing. Frame ``i`` at ``fps`` is computed on
demand, colour or grey (an IR camera at night).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .camera import _PERSON_CROP, _read, default_media_dir


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
