"""Crossings-to-alarm-starts: a person walks through a zone, how many ``start``s?

Real models, real person crop (``../shared/media/squat.bmp``) walking over a
background; frames fed at the camera rate with the pipeline's clock stepped by
1/fps, so the figure does not depend on this machine's speed.

    python -m benchmarks.crossings [--crossings 20] [--fps 5 15 25] [--models v1 default]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from shaobing.agent.detection.config import CameraConfig, CameraZone, DetectorConfig
from shaobing.agent.detection.detector import Detector
from shaobing.agent.detection.pipeline import DetectionPipeline
from shaobing.models.fetch import fetch
from shaobing.simulator.crossing import CrossingScene, CrossingSpec

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"
V1 = SHARED / "models" / "coco-ssd-mobilenet-v1-quant" / "detect.tflite"
ZONE = CameraZone(id="track-1", polygon=[(0.3, 0.0), (0.7, 0.0), (0.7, 1.0), (0.3, 1.0)])


class _Sink:
    def __init__(self) -> None:
        self.events: list[dict] = []

    def emit(self, type, source, **kw):
        if type == "alarm.intrusion":
            self.events.append(kw["data"])


class _Clock:
    t = 1000.0

    def __call__(self) -> float:
        return self.t


def run_crossings(
    detector: Detector, fps: float, ir: bool, crossings: int, cfg: DetectorConfig | None = None
) -> list[int]:
    """Starts raised per crossing (each crossing a fresh pipeline, a varied walk)."""
    starts = []
    for n in range(crossings):
        # Vary speed and pole so that the crossings are not copies of one.
        spec = CrossingSpec(
            fps=fps, ir=ir, walk_s=4.2 + 0.1 * (n % 10), pole_x=0.45 + 0.02 * (n % 7)
        )
        scene = CrossingScene(spec)
        sink, clock = _Sink(), _Clock()
        cam = CameraConfig(id="cam", source="sim:person-crossing", zones=[ZONE])
        pipe = DetectionPipeline(detector, [cam], sink, cfg or DetectorConfig(), clock=clock)
        c = pipe.camera("cam")
        for i in range(scene.length):
            pipe.process(c, scene.frame(i))
            clock.t += 1.0 / fps
        starts.append(sum(1 for e in sink.events if e["phase"] == "start"))
    return starts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--crossings", type=int, default=20)
    p.add_argument("--fps", type=float, nargs="+", default=[5, 15, 25])
    p.add_argument("--models", nargs="+", default=["v1", "default"])
    args = p.parse_args(argv)
    rows = []
    for name in args.models:
        detector = (
            Detector(V1) if name == "v1" else Detector("blazepose-person", model_dir=fetch().parent)
        )
        for fps in args.fps:
            for ir in (False, True):
                starts = run_crossings(detector, fps, ir, args.crossings)
                row = {
                    "model": name,
                    "fps": fps,
                    "frames": "grey" if ir else "colour",
                    "crossings": len(starts),
                    "one_start": sum(1 for s in starts if s == 1),
                    "starts": sum(starts),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
