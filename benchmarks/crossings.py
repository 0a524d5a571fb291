"""Crossings-to-alarm-starts: a person walks through a zone, how many ``start``s?

Real models, the real person from ``../shared/media/squat.bmp`` walking across
the real road of ``traffic_0001.bmp`` (two parked cars) and behind a pole
(simulator/crossing.py); frames fed at the camera rate with the pipeline's
clock stepped by 1/fps, so the figure does not depend on this machine's speed.

    python -m benchmarks.crossings [--crossings 20] [--fps 5 15 25] [--models v1 default]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from shaobing.agent.detection.detector import Detector
from shaobing.models.fetch import fetch
from shaobing.simulator.crossing import CrossingSpec, run_crossing

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"
V1 = SHARED / "models" / "coco-ssd-mobilenet-v1-quant" / "detect.tflite"


def varied(n: int, fps: float, ir: bool) -> CrossingSpec:
    """Crossing ``n``: speed and pole vary so that the crossings are not copies of one."""
    return CrossingSpec(fps=fps, ir=ir, walk_s=4.2 + 0.1 * (n % 10), pole_x=0.45 + 0.02 * (n % 7))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--crossings", type=int, default=20)
    p.add_argument("--fps", type=float, nargs="+", default=[5, 15, 25])
    p.add_argument("--models", nargs="+", default=["v1", "default"])
    args = p.parse_args(argv)
    for name in args.models:
        detector = (
            Detector(V1) if name == "v1" else Detector("blazepose-person", model_dir=fetch().parent)
        )
        for fps in args.fps:
            for ir in (False, True):
                runs = [run_crossing(detector, varied(n, fps, ir)) for n in range(args.crossings)]
                row = {
                    "model": name,
                    "fps": fps,
                    "frames": "grey" if ir else "colour",
                    "crossings": len(runs),
                    "one_start": sum(1 for r in runs if r.starts == 1),
                    "starts": sum(r.starts for r in runs),
                    "ended": sum(1 for r in runs if r.phases()[-1:] == ["end"]),
                    "inferences": sum(r.inferences for r in runs),
                    "idle": sum(r.idle for r in runs),
                }
                print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
