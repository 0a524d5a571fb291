"""What a camera costs: bare OpenCV decoding vs the agent, on the same real RTSP stream.

A real RTSP server (``simulator/rtsp_server.py``, GStreamer, its own process) loops H.264
encoded like an IP camera (main profile, no B-frames, 2 s GOP) from real pictures: an idle
road with two parked cars, and the same road with a real person crossing it (about 9 s a
loop). For every resolution x frame rate x camera count, each figure comes from its own
child process reading that stream for ``--seconds`` after a warm-up:

- ``bare``: ``cv2.VideoCapture.read()`` of every frame, one thread per camera;
- ``idle`` / ``crossing``: the agent's detection pipeline (capture threads at
  ``detect.fps``, motion gate, detector, tracker, events and JPEGs) with the COCO SSD v1;

CPU is the child's user+sys time over the window (% of one core), RSS its resident set at
the end. ``crossing`` also reports alarm starts per crossing seen, and the target of issue
13 (bare + detect.fps x the measured CPU of one inference, + 10 %). A last run measures
RSS with 2 cameras detecting on a 640x360 sub-stream with a warm 1080p snapshot stream.

    python -m benchmarks.camera [--seconds 20] [--sizes 720p 1080p] [--fps 15 25]
                                [--cameras 1 2] [--detect-fps 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
V1 = SHARED / "models" / "coco-ssd-mobilenet-v1-quant" / "detect.tflite"
SIZES = {"360p": (640, 360), "720p": (1280, 720), "1080p": (1920, 1080)}


def _rss_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


# -- the child processes ----------------------------------------------------------


def _measure(warm: threading.Event, seconds: float, count=lambda: 0, timeout: float = 60.0) -> dict:
    """CPU % of one core over the window; ``count()`` (e.g. inferences) taken across it too."""
    if not warm.wait(timeout):
        raise SystemExit("no frame from the stream before the deadline")
    time.sleep(3.0)  # warm-up: decoder and interpreter settled (a benchmark pause)
    cpu0, t0, n0 = _cpu_s(), time.monotonic(), count()
    time.sleep(seconds)  # the measured window
    cpu1, t1, n1 = _cpu_s(), time.monotonic(), count()
    return {
        "cpu_pct": round(100 * (cpu1 - cpu0) / (t1 - t0), 1),
        "window_s": t1 - t0,
        "per_s": round((n1 - n0) / (t1 - t0), 2),
    }


def worker_bare(urls: list[str], seconds: float) -> dict:
    import cv2

    stop, warm = threading.Event(), threading.Event()
    frames = [0] * len(urls)

    def read(i: int, url: str) -> None:
        cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG)
        while not stop.is_set():
            ok, _ = cap.read()
            if ok:
                frames[i] += 1
                if all(frames):
                    warm.set()
        cap.release()

    threads = [threading.Thread(target=read, args=(i, u), daemon=True) for i, u in enumerate(urls)]
    for t in threads:
        t.start()
    out = _measure(warm, seconds)
    stop.set()
    for t in threads:
        t.join(10)
    return out | {"rss_mb": round(_rss_mb(), 1)}


class _Sink:
    def __init__(self) -> None:
        self.starts = 0

    def emit(self, type, source, **kw):
        if type == "alarm.intrusion" and kw["data"]["phase"] == "start":
            self.starts += 1


def worker_agent(
    urls: list[str], seconds: float, detect_fps: float | None, snapshot_url: str | None
) -> dict:
    import cv2
    import numpy as np

    from shaobing.agent.detection.config import (
        CameraConfig,
        CameraZone,
        DetectorConfig,
        DetectStream,
        SnapshotStream,
    )
    from shaobing.agent.detection.detector import Detector
    from shaobing.agent.detection.pipeline import DetectionPipeline

    detector = Detector(V1)
    # CPU of one inference (the whole detect path) on a frame of the stream's size.
    cap = cv2.VideoCapture(urls[0], cv2.CAP_FFMPEG)
    ok, frame = cap.read()
    cap.release()
    frame = frame if ok else np.zeros((720, 1280, 3), np.uint8)
    detector.detect(frame)
    cpu0 = _cpu_s()
    for _ in range(30):
        detector.detect(frame)
    infer_cpu_ms = (_cpu_s() - cpu0) / 30 * 1000

    zone = CameraZone(
        id="track-1", polygon=[(0.3, 0.0), (0.7, 0.0), (0.7, 1.0), (0.3, 1.0)], labels=["person"]
    )
    snap = SnapshotStream(source=snapshot_url, keep_warm=True) if snapshot_url else SnapshotStream()
    cams = [
        CameraConfig(
            id=f"cam{i}",
            source=url,
            zones=[zone],
            detect=DetectStream(fps=detect_fps),
            snapshot=snap,
        )
        for i, url in enumerate(urls)
    ]
    sink = _Sink()
    pipe = DetectionPipeline(detector, cams, sink, DetectorConfig())
    warm = threading.Event()
    pipe.start()

    def watch() -> None:
        while not warm.is_set():
            if all(s.captured > 0 for s in pipe.stats()):
                warm.set()
            time.sleep(0.05)

    threading.Thread(target=watch, daemon=True).start()
    starts_before = sink.starts
    out = _measure(warm, seconds, lambda: sum(s.inferences for s in pipe.stats()))
    starts = sink.starts - starts_before
    rss = _rss_mb()
    pipe.stop()
    return out | {
        "rss_mb": round(rss, 1),
        "infer_cpu_ms": round(infer_cpu_ms, 2),
        "starts": starts,
        "inferences_per_s": out.pop("per_s"),
    }


# -- the parent --------------------------------------------------------------------


def _clips(workdir: Path, size: tuple[int, int], fps: int) -> tuple[Path, Path, float]:
    from shaobing.simulator.crossing import CrossingScene, CrossingSpec
    from shaobing.simulator.ipcam import encode

    w, h = size
    scene = CrossingScene(CrossingSpec(fps=fps, width=w, height=h))
    crossing = workdir / f"crossing-{w}x{h}-{fps}.h264"
    idle = workdir / f"idle-{w}x{h}-{fps}.h264"
    if not crossing.exists():
        encode((scene.frame(i) for i in range(scene.length)), crossing, fps)
    if not idle.exists():
        road = scene.frame(0)  # before the walk: the road, its two parked cars, the pole
        encode((road for _ in range(4 * fps)), idle, fps)
    return idle, crossing, scene.length / fps


def _child(args: list[str]) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.camera", "--worker", *args]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr[-1500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(args: argparse.Namespace) -> list[dict]:
    from shaobing.simulator.ipcam import RtspServer

    rows = []
    detect_fps = str(args.detect_fps) if args.detect_fps else "none"
    with tempfile.TemporaryDirectory(prefix="shaobing-camera-bench-") as tmp:
        work = Path(args.workdir) if args.workdir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for size_name in args.sizes:
            for fps in args.fps:
                idle, crossing, loop_s = _clips(work, SIZES[size_name], fps)
                with RtspServer({"idle": idle, "crossing": crossing}, fps) as server:
                    for n in args.cameras:
                        sec = str(args.seconds)
                        bare = _child(["bare", sec, *[server.url("idle")] * n])
                        agent_idle = _child(
                            ["agent", sec, detect_fps, "-", *[server.url("idle")] * n]
                        )
                        agent_x = _child(
                            ["agent", sec, detect_fps, "-", *[server.url("crossing")] * n]
                        )
                        crossings = n * agent_x["window_s"] / loop_s
                        rate = args.detect_fps or fps
                        target = bare["cpu_pct"] + n * rate * agent_x["infer_cpu_ms"] / 10
                        row = {
                            "stream": f"{size_name} {fps} fps",
                            "cameras": n,
                            "detect_fps": args.detect_fps,
                            "bare_cpu_pct": bare["cpu_pct"],
                            "idle_cpu_pct": agent_idle["cpu_pct"],
                            "idle_vs_bare": round(agent_idle["cpu_pct"] / bare["cpu_pct"], 2),
                            "idle_infer_per_s": agent_idle["inferences_per_s"],
                            "crossing_cpu_pct": agent_x["cpu_pct"],
                            "crossing_target_pct": round(target * 1.1, 1),
                            "crossing_infer_per_s": agent_x["inferences_per_s"],
                            "infer_cpu_ms": agent_x["infer_cpu_ms"],
                            "crossings": round(crossings, 1),
                            "starts": agent_x["starts"],
                            "bare_rss_mb": bare["rss_mb"],
                            "agent_rss_mb": max(agent_idle["rss_mb"], agent_x["rss_mb"]),
                        }
                        rows.append(row)
                        print(json.dumps(row), flush=True)
        # RSS: 2 cameras detecting on the sub-stream, a warm 1080p main stream each.
        fps = args.fps[0]
        _, sub, _ = _clips(work, SIZES["360p"], fps)
        _, main, _ = _clips(work, SIZES["1080p"], fps)
        with RtspServer({"sub": sub, "main": main}, fps) as server:
            two = _child(
                [
                    "agent",
                    str(args.seconds),
                    detect_fps,
                    server.url("main"),
                    *[server.url("sub")] * 2,
                ]
            )
        row = {
            "stream": f"2 x (detect 640x360 + warm snapshot 1920x1080) {fps} fps",
            "cameras": 2,
            "agent_cpu_pct": two["cpu_pct"],
            "agent_rss_mb": two["rss_mb"],
            "starts": two["starts"],
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        mode, seconds, *rest = argv[1:]
        if mode == "bare":
            result = worker_bare(rest, float(seconds))
        else:
            detect_fps, snapshot_url, *urls = rest
            result = worker_agent(
                urls,
                float(seconds),
                None if detect_fps == "none" else float(detect_fps),
                None if snapshot_url == "-" else snapshot_url,
            )
        print(json.dumps(result))
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=20.0, help="measured window per figure")
    p.add_argument("--sizes", nargs="+", default=["720p", "1080p"], choices=list(SIZES))
    p.add_argument("--fps", type=int, nargs="+", default=[15, 25])
    p.add_argument("--cameras", type=int, nargs="+", default=[1, 2])
    p.add_argument("--detect-fps", type=float, default=5.0, help="0: every frame")
    p.add_argument("--workdir", help="keep the encoded clips here (default: a temp dir)")
    p.add_argument("--json", action="store_true", help="only the JSON rows")
    args = p.parse_args(argv)
    rows = run(args)
    if not args.json:
        print()
        for row in rows:
            print("  ".join(f"{k}={v}" for k, v in row.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
