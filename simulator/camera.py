"""A virtual camera made of real pictures, so that a real detector decides.

Scenes paste the real person from ``squat.bmp`` onto a textured background and
walk it across the frame, or loop the real traffic frames. The object has the
``cv2.VideoCapture`` reading surface the camera driver uses (``isOpened``,
``read``, ``release``), paces itself at ``fps`` like a live camera, and can be
told to fail (refuse to open, stop delivering) to exercise fault handling.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl

import cv2
import numpy as np

# Where the person stands in squat.bmp (x0, y0, x1, y1 relative), found by the
# COCO SSD on that picture with some margin.
_PERSON_CROP = (0.18, 0.19, 0.76, 1.0)
SCENES = ("person-crossing", "traffic", "empty")


def default_media_dir() -> Path:
    env = os.environ.get("SHAOBING_MEDIA_DIR")
    if env:
        return Path(env)
    # simulator/ sits at the top of the checkout; shared/ lies beside the checkout.
    return Path(__file__).resolve().parent.parent.parent / "shared" / "media"


def _read(path: Path) -> np.ndarray:
    img = cv2.imread(str(path))
    if img is None:
        raise FileNotFoundError(f"simulator media {path} missing (set SHAOBING_MEDIA_DIR)")
    return img


def background(width: int, height: int, seed: int = 3) -> np.ndarray:
    """Gravel-like texture with a horizon gradient: nothing a detector knows."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(60, 160, size=(height // 4 + 1, width // 4 + 1, 1), dtype=np.uint8)
    noise = cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)[:height, :width]
    ramp = np.linspace(0.7, 1.1, height, dtype=np.float32)[:, None]
    grey = np.clip(noise.astype(np.float32) * ramp, 0, 255).astype(np.uint8)
    tint = np.array([0.85, 1.0, 0.95], np.float32)
    return np.clip(grey[..., None] * tint, 0, 255).astype(np.uint8)


@dataclass
class SceneSpec:
    name: str = "person-crossing"
    fps: float = 10.0
    width: int = 640
    height: int = 360
    steps: int = 24  # frames the person takes to cross the frame
    idle: int = 6  # empty frames before and after the crossing
    loop: bool = True
    fail_open: int = 0  # refuse this many opens
    fail_after: int = 0  # stop delivering after this many frames, once
    freeze_after: int = 0  # block in read() after this many frames, once (a hung stream)
    freeze_s: float = 2.0  # how long that read() blocks
    ir: bool = False  # deliver single-channel frames (a night IR camera)

    @classmethod
    def parse(cls, spec: str) -> SceneSpec:
        """``sim:person-crossing?fps=20&fail_open=2`` (the ``sim:`` prefix optional)."""
        body = spec.removeprefix("sim:")
        name, _, query = body.partition("?")
        out = cls(name=name or "person-crossing")
        for key, value in parse_qsl(query):
            if not hasattr(out, key) or key == "name":
                raise ValueError(f"unknown simulator camera option {key!r} in {spec!r}")
            kind = type(getattr(out, key))
            parsed = value.lower() in {"1", "true", "yes"} if kind is bool else kind(value)
            setattr(out, key, parsed)
        if out.name not in SCENES:
            raise ValueError(f"unknown simulator scene {out.name!r} (known: {', '.join(SCENES)})")
        return out


class Scene:
    """Frame ``i`` of a scene, computed on demand (no frame list held in memory)."""

    def __init__(self, spec: SceneSpec, media_dir: Path | None = None) -> None:
        self.spec = spec
        media = media_dir or default_media_dir()
        w, h = spec.width, spec.height
        self.bg = background(w, h)
        if spec.name == "traffic":
            self.traffic = [
                cv2.resize(_read(media / f"traffic_000{i}.bmp"), (w, h)) for i in (1, 2, 3)
            ]
        if spec.name == "person-crossing":
            src = _read(media / "squat.bmp")
            sh, sw = src.shape[:2]
            x0, y0, x1, y1 = _PERSON_CROP
            crop = src[round(y0 * sh) : round(y1 * sh), round(x0 * sw) : round(x1 * sw)]
            ph = int(h * 0.7)
            self.person = cv2.resize(crop, (round(crop.shape[1] * ph / crop.shape[0]), ph))

    @property
    def length(self) -> int:
        s = self.spec
        if s.name == "person-crossing":
            return s.idle + s.steps + s.idle
        if s.name == "traffic":
            return 3
        return 1

    def person_x(self, i: int) -> int | None:
        """Left edge of the person in frame ``i``, or None when not in view."""
        s = self.spec
        step = i - s.idle
        if not 0 <= step < s.steps:
            return None
        pw = self.person.shape[1]
        return round(step * (s.width - pw) / max(1, s.steps - 1))

    def frame(self, i: int) -> np.ndarray:
        s = self.spec
        i %= self.length
        if s.name == "traffic":
            img = self.traffic[i].copy()
        else:
            img = self.bg.copy()
            x = self.person_x(i) if s.name == "person-crossing" else None
            if x is not None:
                ph, pw = self.person.shape[:2]
                y = s.height - ph - s.height // 20
                img[y : y + ph, x : x + pw] = self.person
        return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if s.ir else img


class _Faults:
    """Failure budget shared by the opens of one virtual camera (survives reopen)."""

    def __init__(self, spec: SceneSpec) -> None:
        self.lock = threading.Lock()
        self.open_failures_left = spec.fail_open
        self.stall_pending = spec.fail_after > 0
        self.freeze_pending = spec.freeze_after > 0


class VirtualCamera:
    """``cv2.VideoCapture``-like reader of a scene, paced at the scene's fps."""

    def __init__(self, scene: Scene, faults: _Faults | None = None) -> None:
        self.scene = scene
        self.faults = faults or _Faults(scene.spec)
        self.index = 0
        self._next = time.monotonic()
        with self.faults.lock:
            self._opened = self.faults.open_failures_left <= 0
            if not self._opened:
                self.faults.open_failures_left -= 1

    def isOpened(self) -> bool:
        return self._opened

    def read(self) -> tuple[bool, np.ndarray | None]:
        spec = self.scene.spec
        if not self._opened:
            return False, None
        if not spec.loop and self.index >= self.scene.length:
            return False, None
        with self.faults.lock:
            if self.faults.stall_pending and self.index >= spec.fail_after:
                self.faults.stall_pending = False
                return False, None
            freeze = self.faults.freeze_pending and self.index >= spec.freeze_after
            if freeze:
                self.faults.freeze_pending = False
        if freeze:
            time.sleep(spec.freeze_s)
            self._next = time.monotonic()
        delay = self._next - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self._next = max(self._next + 1.0 / spec.fps, time.monotonic() - 1.0 / spec.fps)
        frame = self.scene.frame(self.index)
        self.index += 1
        return True, frame

    def release(self) -> None:
        self._opened = False


class VirtualCameraFactory:
    """Opens a fresh ``VirtualCamera`` on each call; fault budgets span reopenings."""

    def __init__(self, spec: SceneSpec | str, media_dir: Path | None = None) -> None:
        self.spec = SceneSpec.parse(spec) if isinstance(spec, str) else spec
        self.scene = Scene(self.spec, media_dir)
        self.faults = _Faults(self.spec)

    def __call__(self) -> VirtualCamera:
        return VirtualCamera(self.scene, self.faults)
