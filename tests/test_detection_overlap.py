"""Preprocessing overlaps inference: the inference thread only invokes (issue 13 target
``pipeline_vs_raw >= 0.95``; the figures are ``shaobing bench``'s, docs/benchmarks.md)."""

from __future__ import annotations

import threading

import pytest
from detection_support import V1, need_shared
from sinks import ListSink

from shaobing.agent.detection.config import CameraConfig, CameraZone, DetectorConfig, MotionConfig
from shaobing.agent.detection.detector import Detector
from shaobing.agent.detection.pipeline import DetectionPipeline
from shaobing.drivers.camera import LatestFrame
from shaobing.simulator.camera import Scene, SceneSpec


class ThreadRecordingDetector(Detector):
    """The real detector, noting which thread prepared each frame."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.prepared_on: list[str] = []

    def prepare(self, frame):
        self.prepared_on.append(threading.current_thread().name)
        return super().prepare(frame)


class FastCamera(LatestFrame):
    """Faster than inference: whenever a frame is taken, the next is there."""

    def __init__(self, frames) -> None:
        super().__init__()
        self.frames = frames
        self.put(frames[0])

    def take(self):
        frame = super().take()
        self.put(self.frames[self.captured % len(self.frames)])
        return frame


@pytest.fixture(scope="module")
def detector():
    need_shared()
    return ThreadRecordingDetector(V1)


def test_detection_next_frame_is_prepared_while_this_one_infers(detector):
    scene = Scene(SceneSpec(loop=False))
    # A dozen frames of the walk (the budget), a zone over the whole frame.
    frames = [scene.frame(i) for i in range(6, 18)]
    zone = CameraZone(id="z", polygon=[(0, 0), (1, 0), (1, 1), (0, 1)])
    cam = CameraConfig(
        id="cam", source="sim:person-crossing", zones=[zone], motion=MotionConfig(enabled=False)
    )
    overlapped, serial = ListSink(), ListSink()
    pipe = DetectionPipeline(detector, [cam], overlapped, DetectorConfig())
    pipe.camera("cam").camera.slot = FastCamera(frames)
    clock = [0.0]
    ref = DetectionPipeline(detector, [cam], serial, DetectorConfig(), clock=lambda: clock[0])
    pipe.clock = lambda: clock[0]
    try:
        for i in range(len(frames)):
            clock[0] = i * 0.2
            assert pipe.step() == 1
    finally:
        pipe.stop()
    # The first round has nothing prepared ahead; every later frame was prepared
    # on the preprocessing thread, never on the inference (here: main) thread.
    threads = detector.prepared_on[: len(frames)]
    assert threads.count("MainThread") == 1, threads
    assert sum(name.startswith("preprocess") for name in threads) == len(frames) - 1, threads
    # Same frames, same clock, serially: the same alarms.
    for i, frame in enumerate(frames):
        clock[0] = i * 0.2
        ref.process(ref.camera("cam"), frame)
    ref.stop()  # both end their alarms at shutdown
    key = [(e.data["phase"], e.data["track_id"]) for e in overlapped.of_type("alarm.intrusion")]
    assert key == [(e.data["phase"], e.data["track_id"]) for e in serial.of_type("alarm.intrusion")]
    assert ("start", 1) in key


def test_detection_preprocess_worker_counts_a_bad_frame_and_goes_on(detector, caplog):
    """The preprocessing thread is a worker on the shared lifecycle: a frame it cannot
    prepare is counted and logged there, fails that step on the inference thread (as
    when preparing ran there), and the next frames are prepared as before."""
    scene = Scene(SceneSpec(loop=False))
    good = [scene.frame(i) for i in range(6, 12)]
    bad = good[0][..., :2]  # two channels: no model input can be made of it
    frames = [*good[:3], bad, *good[3:]]
    cam = CameraConfig(id="cam", source="sim:person-crossing", motion=MotionConfig(enabled=False))
    pipe = DetectionPipeline(detector, [cam], ListSink(), DetectorConfig())
    pipe.camera("cam").camera.slot = FastCamera(frames)
    outcomes = []
    try:
        for _ in range(len(frames) + 2):
            try:
                outcomes.append(pipe.step())
            except IndexError:
                outcomes.append("failed")
        worker = pipe.lookahead
        assert worker is not None and worker.worker.is_running() and pipe.alive()
        assert worker.state.errors == 1 and "IndexError" in (worker.state.last_error or "")
        assert worker.state.turns >= len(frames)
    finally:
        pipe.stop()
    assert outcomes.count("failed") == 1, outcomes
    assert outcomes[-3:] == [1, 1, 1], outcomes  # back to one frame a step after the bad one
    assert any(r.getMessage() == "preprocessing round failed" for r in caplog.records)
    # Stopped with the pipeline: no preprocessing thread is left behind.
    assert pipe.lookahead is None
    assert not any(t.name == "preprocess" for t in threading.enumerate())
