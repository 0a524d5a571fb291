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
