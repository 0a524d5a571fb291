"""Stream roles (issue 13 item 1): alarm JPEGs from the snapshot stream, and the fallback to
the detect stream when the snapshot stream is down. Frame-stepped, real detector."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from detection_support import V1, need_shared
from sinks import ListSink

from shaobing.agent.detection.config import (
    CameraConfig,
    CameraZone,
    DetectorConfig,
    SnapshotStream,
    TrackerConfig,
)
from shaobing.agent.detection.detector import Detector
from shaobing.agent.detection.pipeline import DetectionPipeline
from shaobing.cli.schemes import CAMERA_SCHEMES
from shaobing.simulator.camera import Scene, SceneSpec

ZONE = CameraZone(id="track-1", polygon=[(0.3, 0.0), (0.7, 0.0), (0.7, 1.0), (0.3, 1.0)])


class FakeClock:
    t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def v1() -> Detector:
    need_shared()
    return Detector(V1)


def crossing(v1: Detector, snapshot: SnapshotStream, sink: ListSink) -> DetectionPipeline:
    """Run the simulator's crossing (640x360) through a pipeline, the snapshot stream live."""
    cam = CameraConfig(
        id="cam", source="sim:person-crossing", zones=[ZONE], snapshot=snapshot,
        snapshot_max_bytes=400_000,
    )  # fmt: skip
    cfg = DetectorConfig(tracker=TrackerConfig(update_interval_s=None))
    clock = FakeClock()
    pipe = DetectionPipeline(v1, [cam], sink, cfg, clock=clock, schemes=CAMERA_SCHEMES)
    c = pipe.camera("cam")
    c.snap.start()
    try:
        if snapshot.source.startswith("/dev/"):
            sink.wait_for(lambda ev: any(e.type == "fault.camera" for e in ev))
        scene = Scene(SceneSpec(loop=False))
        for i in range(scene.length):
            pipe.process(c, scene.frame(i))
            clock.t += 0.1
    finally:
        c.snap.stop()
    return pipe


def size(jpeg: bytes) -> list[int]:
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    return [img.shape[1], img.shape[0]]


def test_alarm_jpeg_comes_from_the_snapshot_stream(v1):
    sink = ListSink()
    main = "sim:person-crossing?width=1280&height=720&fps=10"
    crossing(v1, SnapshotStream(source=main, keep_warm=True, wait_s=10.0), sink)
    start = next(e for e in sink.of("alarm.intrusion") if e.data["phase"] == "start")
    assert start.data["frame"] == [640, 360]  # detected on the sub-stream
    assert start.data["snapshot_stream"] == "snapshot"
    assert start.data["snapshot_frame"] == [1280, 720] == size(start.attachment)
    assert sink.of_type("fault.camera") == []


def test_alarm_jpeg_falls_back_to_the_detect_stream_when_the_snapshot_stream_is_down(v1):
    sink = ListSink()
    crossing(v1, SnapshotStream(source="/dev/video99", keep_warm=True, wait_s=30.0), sink)
    (fault,) = sink.of_type("fault.camera")
    assert fault.data["state"] == "down" and fault.data["stream"] == "snapshot"
    events = sink.of("alarm.intrusion")
    assert [e.data["phase"] for e in events] == ["start", "end"]
    start = events[0]
    # No wait for a stream that is down: the detect frame, said so.
    assert start.data["snapshot_stream"] == "detect"
    assert start.data["snapshot_frame"] == [640, 360] == size(start.attachment)


def test_self_test_opens_the_snapshot_stream_too(tmp_path):
    from types import SimpleNamespace

    from detection_support import MEDIA

    from shaobing.provisioning.selftest import FAIL, PASS, Context, camera_checks

    need_shared()
    sub, main = tmp_path / "sub", tmp_path / "main"
    for d, name in ((sub, "traffic_0001.bmp"), (main, "cat_720p.jpg")):
        d.mkdir()
        (d / name).write_bytes((MEDIA / name).read_bytes())
    cams = [
        CameraConfig(id="cam-1", source=str(sub), snapshot=SnapshotStream(source=str(main))),
        CameraConfig(
            id="cam-2", source=str(sub), snapshot=SnapshotStream(source=str(tmp_path / "x.mp4"))
        ),
    ]
    ctx = Context(config=SimpleNamespace(cameras=cams))
    checks = list(camera_checks(ctx.config, ctx))
    outcomes = {c.name.split(" (")[0]: c.run(ctx) for c in checks}
    assert list(outcomes) == ["cam-1", "cam-1 snapshot stream", "cam-2", "cam-2 snapshot stream"]
    assert outcomes["cam-1"].status == PASS and "256x256" in outcomes["cam-1"].reason
    assert outcomes["cam-1 snapshot stream"].status == PASS
    assert "1280x720" in outcomes["cam-1 snapshot stream"].reason
    assert outcomes["cam-2 snapshot stream"].status == FAIL
    # The model check runs on detect-stream frames only.
    assert ctx.frames["cam-1"].shape[:2] == (256, 256)


def test_verification_snapshot_comes_from_the_snapshot_stream(v1):
    import time

    from shaobing.agent.camera_verifier import PipelineVerifier

    person = "sim:person-crossing?idle=0&steps=1000&fps=10"  # the person always in view
    cam = CameraConfig(
        id="cam", source=person, snapshot_max_bytes=400_000,
        snapshot=SnapshotStream(source=person + "&width=1280&height=720", keep_warm=True),
    )  # fmt: skip
    pipe = DetectionPipeline(v1, [cam], ListSink(), DetectorConfig(), schemes=CAMERA_SCHEMES)
    pipe.start_cameras()
    try:
        result = PipelineVerifier(pipe, {"person"}, 0.5).verify(["cam"], time.monotonic() + 30)
    finally:
        pipe.stop()
    assert result is not None and "person" in result.labels
    assert size(result.snapshot_jpeg) == [1280, 720]
