"""Cameras against a real RTSP server (GStreamer, its own process) streaming H.264 encoded
like an IP camera: crossings, stream roles, detect.fps, and every way a camera fails."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import wait_for
from detection_support import V1, need_shared
from rtsp_support import FPS, MAIN, SUB, SilentServer, corrupt_copy, crossing_clip
from sinks import ListSink

from shaobing.agent.camera_verifier import PipelineVerifier
from shaobing.agent.detection.config import (
    CameraConfig,
    CameraZone,
    DetectorConfig,
    DetectStream,
    SnapshotStream,
)
from shaobing.agent.detection.detector import Detector
from shaobing.agent.detection.pipeline import DetectionPipeline
from shaobing.agent.verification import CameraDown
from shaobing.simulator.ipcam import RtspServer

ZONE = CameraZone(
    id="track-1", polygon=[(0.3, 0.0), (0.7, 0.0), (0.7, 1.0), (0.3, 1.0)], labels=["person"]
)


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> dict[str, Path]:
    need_shared()
    d = tmp_path_factory.mktemp("ipcam")
    sub = crossing_clip(d / "sub.h264", SUB)
    return {
        "sub": sub,
        "main": crossing_clip(d / "main.h264", MAIN),
        "corrupt": corrupt_copy(sub, d / "corrupt.h264"),
    }


@pytest.fixture
def rtsp(clips) -> Iterator[RtspServer]:
    """Serves /sub (640x360) and /main (1280x720) of the same crossing, 15 fps, 2 s GOP."""
    server = RtspServer({"sub": clips["sub"], "main": clips["main"]}, FPS).start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def v1() -> Detector:
    need_shared()
    return Detector(V1)


def camera(url: str, **kw) -> CameraConfig:
    base = dict(
        id="cam",
        source=url,
        zones=[ZONE],
        open_timeout_s=2.0,
        stall_timeout_s=3.0,
        backoff_min_s=0.2,
        backoff_max_s=1.0,
        snapshot_max_bytes=400_000,
    )
    base.update(kw)
    return CameraConfig(**base)


def faults(sink: ListSink, stream: str = "detect") -> list:
    return [e for e in sink.of_type("fault.camera") if e.data["stream"] == stream]


def states(sink: ListSink, stream: str = "detect") -> list[str]:
    return [e.data["state"] for e in faults(sink, stream)]


def jpeg_size(data: bytes) -> tuple[int, int]:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return img.shape[1], img.shape[0]


def test_rtsp_crossing_alarm_detects_on_sub_stream_and_snapshots_the_main_stream(v1, rtsp):
    sink = ListSink()
    cam = camera(
        rtsp.url("sub"),
        snapshot=SnapshotStream(source=rtsp.url("main"), keep_warm=True),
    )
    pipe = DetectionPipeline(v1, [cam], sink, DetectorConfig())
    pipe.start()
    try:
        sink.wait_for(
            lambda ev: any(e.type == "alarm.intrusion" and e.data["phase"] == "start" for e in ev),
            timeout=60,
        )
        verifier = PipelineVerifier(pipe, {"person"}, 0.5)
        command_jpeg = verifier.snapshot("cam", time.monotonic() + 20)
        c = pipe.camera("cam")
        grabbed, converted = c.camera.grabbed, c.camera.slot.captured
    finally:
        pipe.stop()
    start = next(e for e in sink.of("alarm.intrusion") if e.data["phase"] == "start")
    assert start.data["label"] == "person" and start.data["frame"] == list(SUB)
    # The JPEG is the main stream's frame, the box moved onto it.
    assert start.data["snapshot_stream"] == "snapshot"
    assert start.data["snapshot_frame"] == list(MAIN) == list(jpeg_size(start.attachment))
    assert jpeg_size(command_jpeg) == MAIN
    # detect.fps 5 of a 15 fps stream: every frame grabbed, about a third converted.
    assert grabbed >= 2 * converted > 0
    assert states(sink) == [] and states(sink, "snapshot") == []


def test_rtsp_on_demand_snapshot_stream_opens_for_a_snapshot_command(v1, rtsp):
    sink = ListSink()
    cam = camera(
        rtsp.url("sub"),
        zones=[],
        snapshot=SnapshotStream(source=rtsp.url("main"), keep_warm=False, linger_s=1.0),
    )
    pipe = DetectionPipeline(v1, [cam], sink, DetectorConfig())
    pipe.start_cameras()  # no inference thread: nothing else wakes the main stream
    try:
        c = pipe.camera("cam")
        wait_for(lambda: c.camera.latest(), 30, "a sub-stream frame")
        assert c.snap.state == "starting" and c.snap.grabbed == 0  # not opened until asked
        jpeg = PipelineVerifier(pipe, {"person"}, 0.5).snapshot("cam", time.monotonic() + 30)
        assert jpeg_size(jpeg) == MAIN
        # Nobody asks again: it closes after linger_s, without a fault.
        wait_for(lambda: c.snap.state == "idle", 30, "the main stream to close")
    finally:
        pipe.stop()
    assert sink.of_type("fault.camera") == []


def test_rtsp_killed_server_camera_down_then_recovered(v1, rtsp):
    sink = ListSink()
    pipe = DetectionPipeline(v1, [camera(rtsp.url("sub"), zones=[])], sink, DetectorConfig())
    pipe.start()
    c = pipe.camera("cam")
    verifier = PipelineVerifier(pipe, {"person"}, 0.5)
    try:
        wait_for(lambda: c.camera.stats().captured > 5, 30, "frames")
        rtsp.kill()
        sink.wait_for(lambda ev: len(ev) >= 1, timeout=30)
        assert states(sink) == ["down"]
        # Issue 11 item 6: no pre-outage frame passes for a snapshot now.
        with pytest.raises(CameraDown):
            verifier.snapshot("cam", time.monotonic() + 5)
        rtsp.restart()
        sink.wait_for(lambda ev: len(ev) >= 2, timeout=60)
        # After a real recovery: frames flow on, and no spurious down/recovered follows
        # while the stall watchdog (the inference thread) keeps checking.
        after = c.camera.stats().captured
        wait_for(lambda: c.camera.stats().captured > after + 3 * 5, 60, "frames after recovery")
        verifier.snapshot("cam", time.monotonic() + 10)
    finally:
        pipe.stop()
    assert states(sink) == ["down", "recovered"]


def test_rtsp_stalled_server_is_down_within_stall_timeout_and_stale_frames_are_dropped(v1, rtsp):
    sink = ListSink()
    cam = camera(rtsp.url("sub"), zones=[], open_timeout_s=2.0, stall_timeout_s=3.0)
    pipe = DetectionPipeline(v1, [cam], sink, DetectorConfig())
    pipe.start()
    c = pipe.camera("cam")
    try:
        wait_for(lambda: c.camera.stats().captured > 5, 30, "frames")
        rtsp.pause()
        sink.wait_for(lambda ev: len(ev) >= 1, timeout=30)
        # The stall watchdog spoke (the decoder's buffered frames after each 2 s read
        # timeout did not count as fresh), not the read failure that comes much later.
        assert faults(sink)[0].data["reason"] == "no frame for 3 s"
        with pytest.raises(CameraDown):
            PipelineVerifier(pipe, {"person"}, 0.5).snapshot("cam", time.monotonic() + 5)
        # How many buffered frames come back depends on the decoder's frame threads
        # (one per core): their count is in the camera's stale counter, not asserted.
        rtsp.resume()
        sink.wait_for(lambda ev: len(ev) >= 2, timeout=60)
        after = c.camera.stats().captured
        wait_for(lambda: c.camera.stats().captured > after + 3 * 5, 60, "frames after recovery")
    finally:
        rtsp.resume()
        pipe.stop()
    assert states(sink) == ["down", "recovered"]


def test_rtsp_url_that_never_answers_is_a_fault_within_the_open_timeout(v1):
    silent = SilentServer()
    sink = ListSink()
    url = f"rtsp://admin:pw@127.0.0.1:{silent.port}/Streaming/Channels/102"
    pipe = DetectionPipeline(v1, [camera(url, open_timeout_s=1.0)], sink, DetectorConfig())
    pipe.start()
    try:
        sink.wait_for(lambda ev: len(ev) >= 1, timeout=30)
        assert silent.accepted, "the camera never connected"
        assert pipe.alive()
    finally:
        pipe.stop()
        silent.close()
    (down,) = faults(sink)
    assert down.data["state"] == "down" and down.data["reason"] in {"cannot open", "no frames"}
    assert "pw" not in down.data["source"]


def test_rtsp_corrupt_stream_is_a_clear_fault_and_other_cameras_run_on(v1, clips):
    server = RtspServer({"bad": clips["corrupt"], "sub": clips["sub"]}, FPS).start()
    sink = ListSink()
    cams = [
        camera(server.url("bad"), id="bad", zones=[]),
        camera(server.url("sub"), id="good", zones=[], detect=DetectStream(fps=None)),
    ]
    pipe = DetectionPipeline(v1, cams, sink, DetectorConfig())
    pipe.start()
    try:
        sink.wait_for(lambda ev: any(e.source.id == "bad" for e in ev), timeout=30)
        good = pipe.camera("good").camera
        wait_for(lambda: good.stats().captured > 10, 60, "frames of the good camera")
        assert pipe.alive() and pipe.camera("bad").camera.slot.captured == 0
    finally:
        pipe.stop()
        server.close()
    down = [e for e in sink.of_type("fault.camera") if e.source.id == "bad"]
    assert [e.data["state"] for e in down] == ["down"]
    assert down[0].data["reason"] in {"no frames", "cannot open", "frames cannot be decoded"}
    assert not [e for e in sink.of_type("fault.camera") if e.source.id == "good"]
