"""Is a candidate model fit to take over? Loaded in a second interpreter and tried.

The running detector keeps serving the cameras meanwhile: the candidate is a
``Detector`` of its own (its own interpreter and lock). It must load, run on
the reference frames (made here, deterministic, so every box tests the same
pictures) and on the post's newest camera frames, stay within the inference
time budget and give sane outputs: each tensor of the shape it declares,
every value finite, boxes finite and scores within [0, 1].
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shaobing.models.manifest import ModelManifest

from .config import DetectorConfig
from .detector import Detector
from .preprocess import prepare
from .runtime import ModelError


class CheckFailed(ValueError):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class CheckReport:
    frames: int
    camera_frames: int
    median_ms: float
    max_ms: float
    detections: int

    def as_dict(self) -> dict[str, float | int]:
        return {
            "frames": self.frames,
            "camera_frames": self.camera_frames,
            "median_ms": round(self.median_ms, 2),
            "max_ms": round(self.max_ms, 2),
            "detections": self.detections,
        }


def reference_frames(width: int = 640, height: int = 480) -> list[np.ndarray]:
    """Daylight scene with upright and wide dark shapes, sensor noise, a night IR frame."""
    rng = np.random.default_rng(17)
    sky = np.linspace(200, 120, height // 2, dtype=np.float32)[:, None, None]
    scene = np.empty((height, width, 3), np.uint8)
    scene[: height // 2] = np.broadcast_to(sky, (height // 2, width, 3)).astype(np.uint8)
    scene[height // 2 :] = (70, 90, 80)  # ground, BGR
    scene[height // 3 : height * 3 // 4, width // 5 : width // 5 + width // 16] = (40, 40, 50)
    scene[height * 3 // 5 : height * 4 // 5, width // 2 : width * 4 // 5] = (30, 30, 140)
    noise = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    ir = np.repeat(rng.integers(20, 90, size=(height, width, 1), dtype=np.uint8), 3, axis=2)
    return [scene, noise, ir]


def output_problems(details: Sequence[dict], outputs: Sequence[np.ndarray]) -> list[str]:
    """Each output tensor of its declared shape and, if floating point, finite."""
    problems = []
    if len(outputs) != len(details):
        return [f"{len(outputs)} outputs, the model declares {len(details)}"]
    for detail, value in zip(details, outputs, strict=True):
        declared = [int(d) for d in detail["shape"]]
        if list(value.shape) != declared:
            problems.append(
                f"output {detail['name']} has shape {list(value.shape)}, declared {declared}"
            )
        elif np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            problems.append(f"output {detail['name']} holds NaN or infinite values")
    return problems


def try_frame(detector: Detector, frame: np.ndarray) -> tuple[float, int, list[str]]:
    """One inference on ``frame``: (invoke seconds, detections, problems)."""
    prepared = prepare(frame, detector.input_spec, detector.model.inputs[0])
    outputs, took = detector._run(prepared.tensor)
    problems = output_problems(detector.model.outputs, outputs)
    if problems:
        return took, 0, problems
    raw = detector.adapter.decode(outputs, detector.score_threshold)
    if len(raw.boxes) and not np.isfinite(raw.boxes).all():
        problems.append("decoded boxes are not finite")
    scores = np.asarray(raw.scores)
    if len(scores) and not (
        np.isfinite(scores).all() and (scores >= 0).all() and (scores <= 1).all()
    ):
        problems.append("decoded scores outside [0, 1]")
    return took, len(raw.scores), problems


def check_candidate(
    model: Path,
    manifest: ModelManifest,
    cfg: DetectorConfig,
    budget_ms: float,
    camera_frames: Sequence[np.ndarray] = (),
) -> tuple[Detector, CheckReport]:
    """Load ``model`` beside the running one and try it; raises ``CheckFailed``."""
    try:
        candidate = Detector(
            model,
            manifest=manifest,
            runtime=cfg.runtime,
            num_threads=cfg.num_threads,
            score_threshold=cfg.score_threshold,
            iou_threshold=cfg.iou_threshold,
        )
    except ModelError as exc:
        raise CheckFailed("does_not_load", str(exc)) from None
    frames = [*reference_frames(), *camera_frames]
    times: list[float] = []
    found = 0
    started = time.perf_counter()
    try:
        try_frame(candidate, frames[0])  # warm-up: delegates prepare on the first invoke
        for i, frame in enumerate(frames):
            took, count, problems = try_frame(candidate, frame)
            if problems:
                raise CheckFailed("insane_outputs", f"frame {i}: {'; '.join(problems)}")
            times.append(took * 1000)
            found += count
    except CheckFailed:
        raise
    except Exception as exc:  # an adapter that cannot read the outputs
        raise CheckFailed("insane_outputs", f"{type(exc).__name__}: {exc}") from None
    median = statistics.median(times)
    if median > budget_ms:
        raise CheckFailed(
            "too_slow",
            f"median inference {median:.1f} ms over the budget of {budget_ms:g} ms "
            f"({len(frames)} frames, {time.perf_counter() - started:.1f} s)",
        )
    report = CheckReport(len(frames), len(camera_frames), median, max(times), found)
    return candidate, report
