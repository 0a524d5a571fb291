"""Inference benchmark: raw interpreter vs the whole pipeline, in one run.

Same model, same thread count, same process: the gap between the two numbers
is what preprocessing, decoding, tracking and the camera threads cost.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from shaobing.agent.detection.config import CameraConfig, CameraZone, DetectorConfig, MotionConfig
from shaobing.agent.detection.detector import Detector
from shaobing.agent.detection.motion import MotionGate
from shaobing.agent.detection.pipeline import DetectionPipeline
from shaobing.agent.detection.runtime import interpreter_threads, threads_arg
from shaobing.core.events import Source
from shaobing.drivers.camera import LatestFrame


class _NullSink:
    def __init__(self) -> None:
        self.count = 0

    def emit(self, type: str, source: Source, **kwargs):
        self.count += 1


class _FastCamera(LatestFrame):
    """A camera faster than inference: whenever a frame is taken, the next one is ready."""

    def __init__(self, frames: list[np.ndarray]) -> None:
        super().__init__()
        self._frames = frames
        self.put(frames[0])

    def take(self):
        frame = super().take()
        self.put(self._frames[self.captured % len(self._frames)])
        return frame


# Frames per block of each measured path (see run()).
_BLOCK = 10


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def run(model: str, threads: int | str, iterations: int, seconds: float, runtime: str) -> dict:
    from shaobing.simulator.camera import Scene, SceneSpec, VirtualCameraFactory

    detector = Detector(model, num_threads=threads, runtime=runtime)
    scene = Scene(SceneSpec(width=1280, height=720, loop=True))
    frames = [scene.frame(i) for i in range(scene.length)]
    rss_loaded = _rss_mb()

    zone = CameraZone(id="z", polygon=[(0.4, 0), (0.6, 0), (0.6, 1), (0.4, 1)])
    # Every frame offered (no motion gate): this measures the per-frame path.
    cam = CameraConfig(
        id="bench", source="sim:person-crossing", zones=[zone], motion=MotionConfig(enabled=False)
    )
    sink = _NullSink()
    cfg = DetectorConfig(num_threads=threads)
    # The agent's path: step() infers this round while the preprocessing thread
    # prepares the camera's next frame, put in its slot as a fast camera would.
    pipe = DetectionPipeline(detector, [cam], sink, cfg)
    pipe.camera("bench").camera.slot = _FastCamera(frames)
    # The same work done serially on the inference thread (how it was before the
    # overlap): preprocess, invoke, decode, track, one after the other.
    serial = DetectionPipeline(detector, [cam], sink, cfg)
    c = serial.camera("bench")
    detector.detect(frames[10])  # warm-up
    pipe.step()
    raw, per_frame, serial_frame = [], [], []
    # CPU time of the calling (inference) thread: what it spends itself, steady
    # even when a shared machine's load stretches the wall-clock figures.
    raw_cpu, pipe_cpu, serial_cpu = [], [], []
    # Short blocks of each in turn, so that all figures see the same load on a
    # shared machine. The pipeline's steps within a block follow each other as
    # in the agent, so preparation left over from one step is waited for by the
    # next (interleaving single steps with raw invokes let that work hide in,
    # and slow, the raw invoke); a block's first step, served by work done
    # during the previous block, is not counted.
    done = 0
    while done < iterations:
        n = min(_BLOCK, iterations - done)
        for _ in range(n):
            cpu = time.thread_time()
            raw.append(detector.invoke_raw())
            raw_cpu.append(time.thread_time() - cpu)
        for k in range(n):
            frame = frames[(done + k) % len(frames)]
            start, cpu = time.perf_counter(), time.thread_time()
            serial.process(c, frame)
            serial_frame.append(time.perf_counter() - start)
            serial_cpu.append(time.thread_time() - cpu)
        pipe.step()
        for _ in range(n):
            start, cpu = time.perf_counter(), time.thread_time()
            pipe.step()
            per_frame.append(time.perf_counter() - start)
            pipe_cpu.append(time.thread_time() - cpu)
        done += n
    pipe.stop()

    gate = MotionGate(MotionConfig())
    still = frames[0]
    gate.check(still)
    idle = []
    for _ in range(max(200, iterations)):
        start = time.perf_counter()
        gate.check(still)
        idle.append(time.perf_counter() - start)

    # Threaded: a 1280x720 virtual camera far faster than inference, as in the field.
    live_cam = CameraConfig(
        id="live", source="sim:person-crossing?fps=200&width=1280&height=720", zones=[zone]
    )
    live = DetectionPipeline(
        detector,
        [live_cam],
        sink,
        DetectorConfig(num_threads=threads),
        schemes={"sim": VirtualCameraFactory},
    )
    live.start()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.1)  # a benchmark duration, not a synchronisation
    stats = live.stats()[0]
    elapsed = seconds
    live.stop()

    raw_ms, pipe_ms, idle_ms = _median_ms(raw), _median_ms(per_frame), _median_ms(idle)
    serial_ms = _median_ms(serial_frame)
    return {
        "model": str(detector.model.path.name),
        "runtime": detector.model.runtime,
        "threads": interpreter_threads(threads),
        "iterations": iterations,
        "raw_invoke_ms_median": round(raw_ms, 2),
        "raw_fps": round(1000 / raw_ms, 1),
        "pipeline_frame_ms_median": round(pipe_ms, 2),
        "pipeline_fps": round(1000 / pipe_ms, 1),
        "pipeline_vs_raw": round(raw_ms / pipe_ms, 3),
        "serial_frame_ms_median": round(serial_ms, 2),
        "serial_vs_raw": round(raw_ms / serial_ms, 3),
        "inference_thread_cpu_ms": {
            "raw": round(_median_ms(raw_cpu), 2),
            "pipeline": round(_median_ms(pipe_cpu), 2),
            "serial": round(_median_ms(serial_cpu), 2),
        },
        "threaded_infer_fps": round(stats.inferences / elapsed, 1),
        "threaded_capture_fps": round(stats.captured / elapsed, 1),
        "threaded_dropped": stats.dropped,
        "idle_frame_us_median": round(idle_ms * 1000, 1),
        "idle_vs_inference": round(idle_ms / pipe_ms, 4),
        "rss_mb_after_load": round(rss_loaded, 1),
        "rss_mb_end": round(_rss_mb(), 1),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "frame": "1280x720 BGR (simulator, real person crop)",
        "cv2_threads": cv2.getNumThreads(),
        "numpy": np.__version__,
    }


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="blazepose-person", help="manifest name or .tflite path")
    p.add_argument(
        "--threads",
        type=threads_arg,
        default="auto",
        help="interpreter threads (default auto: one less than the cores, as the agent)",
    )
    p.add_argument("--iterations", type=int, default=100, help="timed inferences per phase")
    p.add_argument("--seconds", type=float, default=5.0, help="threaded pipeline run time")
    p.add_argument(
        "--runtime",
        default="auto",
        choices=["auto", "ai-edge-litert", "tflite-runtime"],
        help="TFLite runtime; auto: ai-edge-litert if installed",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def main_args(args: argparse.Namespace) -> int:
    result = run(args.model, args.threads, args.iterations, args.seconds, args.runtime)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        width = max(map(len, result))
        for key, value in result.items():
            print(f"{key:<{width}}  {value}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bench", help="benchmark raw interpreter vs detection pipeline")
    add_arguments(p)
    p.set_defaults(func=main_args)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=Path(sys.argv[0]).name, description=__doc__)
    add_arguments(p)
    return main_args(p.parse_args(argv))
