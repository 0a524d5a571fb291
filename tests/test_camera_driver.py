from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest
from detection_support import MEDIA, need_shared
from fake_camera import ScriptedSource, scripted_opener
from sinks import ListSink

from shaobing.drivers.camera import Camera, LatestFrame, redact, source_opener
from shaobing.simulator.camera import Scene, SceneSpec, VirtualCameraFactory


def wait_until(predicate, timeout: float = 10.0, what: str = "condition"):
    cond = threading.Condition()
    deadline = time.monotonic() + timeout
    with cond:
        while not predicate():
            left = deadline - time.monotonic()
            assert left > 0, f"timed out waiting for {what}"
            cond.wait(min(left, 0.02))


def states(sink: ListSink) -> list[str]:
    return [e.data["state"] for e in sink.of_type("fault.camera")]


def test_camera_latest_frame_counts_drops():
    slot = LatestFrame()
    img = np.zeros((2, 2, 3), np.uint8)
    for _ in range(5):
        slot.put(img)
    frame = slot.take()
    assert frame is not None and frame.seq == 5
    assert slot.take() is None
    assert (slot.captured, slot.dropped) == (5, 4)
    slot.put(img)
    assert slot.take().seq == 6 and slot.dropped == 4


def test_camera_that_fails_to_open_raises_fault_then_recovery():
    need_shared()
    sink = ListSink()
    cam = Camera(
        "gate",
        VirtualCameraFactory("sim:empty?fps=50&fail_open=3"),
        sink,
        describe="sim:empty",
        backoff_min_s=0.02,
        backoff_max_s=0.1,
    )
    cam.start()
    try:
        sink.wait_for(lambda ev: len(ev) >= 2)
        wait_until(lambda: cam.take() is not None, what="a frame")
    finally:
        cam.stop()
    assert states(sink) == ["down", "recovered"]
    down, up = sink.of_type("fault.camera")
    assert down.source.kind == "camera" and down.source.id == "gate"
    assert down.data["reason"] == "cannot open" and up.data["down_s"] > 0
    assert cam.stats().reconnects == 1


def test_camera_that_stops_delivering_raises_fault_then_recovery():
    need_shared()
    sink = ListSink()
    cam = Camera(
        "track",
        VirtualCameraFactory("sim:empty?fps=100&fail_after=5"),
        sink,
        backoff_min_s=0.02,
        backoff_max_s=0.1,
    )
    cam.start()
    try:
        sink.wait_for(lambda ev: len(ev) >= 2)
        before = cam.stats().captured
        wait_until(lambda: cam.stats().captured > before + 3, what="frames after recovery")
    finally:
        cam.stop()
    assert states(sink) == ["down", "recovered"]
    assert sink.of_type("fault.camera")[0].data["reason"] == "stopped delivering frames"


def test_camera_failure_leaves_other_cameras_running():
    need_shared()
    sink = ListSink()
    bad = Camera("bad", source_opener("/dev/video99"), sink, backoff_min_s=0.02, backoff_max_s=0.05)
    good = Camera("good", VirtualCameraFactory("sim:traffic?fps=100"), sink)
    bad.start()
    good.start()
    try:
        sink.wait_for(lambda ev: any(e.source.id == "bad" for e in ev))
        wait_until(lambda: good.stats().captured > 10, what="good camera frames")
        wait_until(lambda: bad.stats().reconnects == 0 and bad.state == "down")
    finally:
        bad.stop()
        good.stop()
    # One fault for the whole outage, not one per retry.
    assert [e.source.id for e in sink.of_type("fault.camera")] == ["bad"]


def test_camera_drops_frames_inference_cannot_keep_up_with():
    need_shared()
    sink = ListSink()
    cam = Camera("fast", VirtualCameraFactory("sim:traffic?fps=400"), sink)
    cam.start()
    taken = 0
    try:
        wait_until(lambda: cam.take() is not None, what="first frame")
        taken = 1
        # A consumer that looks only every 20 captured frames.
        for _ in range(3):
            target = cam.stats().captured + 20
            wait_until(lambda t=target: cam.stats().captured >= t, what="capture progress")
            if cam.take() is not None:
                taken += 1
    finally:
        cam.stop()
    s = cam.stats()
    pending = 0 if cam.take() is None else 1
    assert s.dropped == s.captured - taken - pending
    assert s.dropped >= 50 and s.capture_fps > 0


def test_camera_image_directory_and_video_file_sources(tmp_path):
    need_shared()
    for name in ("traffic_0001.bmp", "owl.jpg"):
        (tmp_path / name).write_bytes((MEDIA / name).read_bytes())
    src = source_opener(str(tmp_path), fps=1000)()
    assert src.isOpened()
    shapes = [src.read()[1].shape for _ in range(3)]
    assert shapes[0] == (384, 512, 3) and shapes[1] == (256, 256, 3) and shapes[2] == shapes[0]
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 100, (256, 256))
    for i in (1, 2, 3):
        writer.write(cv2.imread(str(MEDIA / f"traffic_000{i}.bmp")))
    writer.release()
    vid = source_opener(str(video), loop=True)()
    frames = [vid.read() for _ in range(5)]
    vid.release()
    assert all(ok and img.shape == (256, 256, 3) for ok, img in frames)


def test_camera_simulator_ir_scene_is_single_channel():
    need_shared()
    scene = Scene(SceneSpec.parse("sim:person-crossing?ir=1&width=320&height=180"))
    assert scene.frame(10).shape == (180, 320)
    with pytest.raises(ValueError, match="unknown simulator scene"):
        SceneSpec.parse("sim:nothing")


def test_camera_redacts_credentials():
    assert redact("rtsp://admin:secret@10.1.2.3/stream") == "rtsp://***@10.1.2.3/stream"


def test_camera_hung_stream_raises_fault_then_recovery():
    need_shared()
    sink = ListSink()
    cam = Camera("hung", VirtualCameraFactory("sim:empty?fps=50&freeze_after=5&freeze_s=1.5"), sink)
    cam.start()
    try:
        wait_until(lambda: cam.stats().captured >= 5, what="frames before the freeze")
        # The inference loop calls this on every round; here the test plays that part.
        wait_until(
            lambda: cam.check_stall(0.3) or cam.state == "down", what="stall detected", timeout=10
        )
        sink.wait_for(lambda ev: len(ev) >= 2, timeout=10)
    finally:
        cam.stop()
    events = sink.of_type("fault.camera")
    assert states(sink) == ["down", "recovered"]
    assert events[0].data["reason"] == "no frame for 0.3 s"


class StepClock:
    """A monotonic clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_camera_stall_check_during_recovery_sees_the_new_frame():
    # Issue 11 item 6: the recovered report ran before the frame's time was
    # refreshed, so a stall check in that gap saw the pre-outage timestamp.
    clock = StepClock()
    sink = ListSink()
    cam: Camera

    class StallCheckingSink(ListSink):
        def emit(self, type, source, **kw):
            ev = super().emit(type, source, **kw)
            if kw.get("data", {}).get("state") == "recovered":
                cam.check_stall(10.0)  # the inference thread's watchdog, in the gap
            return ev

    sink = StallCheckingSink()
    img = np.zeros((4, 4, 3), np.uint8)

    def outage():
        clock.now += 60.0  # a minute without frames

    first = ScriptedSource([img, img])
    second = ScriptedSource([outage, img, img])
    cam = Camera("gate", scripted_opener(first, second), sink, backoff_min_s=0.01, clock=clock)
    cam.start()
    try:
        assert second.done.wait(10), "second session never finished"
        sink.wait_for(lambda ev: len(ev) >= 3)
    finally:
        cam.stop()
    # down (first source ended), recovered, down (second source ended) -- and no stall "down"
    events = sink.of_type("fault.camera")
    assert states(sink)[:3] == ["down", "recovered", "down"]
    assert [e.data.get("reason") for e in events[:3]] == [
        "stopped delivering frames",
        None,
        "stopped delivering frames",
    ]
    assert events[1].data["down_s"] == 60.0


def test_camera_buffered_frames_after_a_read_timeout_are_not_fresh():
    # Issue 11 item 6: after each read timeout OpenCV hands back frames its
    # decoder buffered before the stall; they kept the stall timer from firing
    # and went through detection.
    clock = StepClock()
    sink = ListSink()
    img = np.zeros((4, 4, 3), np.uint8)
    at_stall = threading.Event()
    go_on = threading.Event()

    def read_timeout():
        clock.now += 6.0  # read() blocked for the 6 s read timeout

    def pause():
        at_stall.set()
        go_on.wait(10)

    source = ScriptedSource([img, read_timeout, img, read_timeout, img, pause, img])
    cam = Camera(
        "rail", scripted_opener(source), sink, backoff_min_s=5.0, clock=clock, stale_read_s=5.0
    )
    cam.start()
    try:
        assert at_stall.wait(10), "source never reached the stall"
        assert cam.take().seq == 1  # only the frame before the stall reached the slot
        assert cam.stale == 2
        cam.check_stall(10.0)  # 12 s since the last fresh frame
        assert states(sink) == ["down"]
        assert sink.of_type("fault.camera")[0].data["reason"] == "no frame for 10 s"
        go_on.set()
        sink.wait_for(lambda ev: len(ev) >= 2)  # a fresh frame: recovered
    finally:
        go_on.set()
        cam.stop()
    assert states(sink)[:2] == ["down", "recovered"]


class ScriptedStream(ScriptedSource):
    """A ``ScriptedSource`` with ``grab()``/``retrieve()``, like ``cv2.VideoCapture``."""

    def __init__(self, steps) -> None:
        super().__init__(steps)
        self._grabbed = None
        self.retrieved: list[np.ndarray] = []

    def grab(self) -> bool:
        ok, self._grabbed = self.read()
        return ok

    def retrieve(self):
        self.retrieved.append(self._grabbed)
        return self._grabbed is not None, self._grabbed


def test_camera_detect_fps_converts_only_the_latest_frame_of_each_tick():
    # Issue 13 item 2: an 8 fps stream at detect fps 4: every frame grabbed, every
    # other one converted; the clock moves by the script, not by this machine.
    clock = StepClock()
    frames = [np.full((2, 2, 3), i, np.uint8) for i in range(16)]
    steps = []
    for img in frames:
        steps += [lambda: setattr(clock, "now", clock.now + 0.125), img]
    stream = ScriptedStream(steps)
    sink = ListSink()
    cam = Camera("sub", scripted_opener(stream), sink, clock=clock, detect_fps=4.0)
    cam.start()
    try:
        assert stream.done.wait(10), "stream never finished"
        sink.wait_for(lambda ev: len(ev) >= 1)  # the stream ended: down
    finally:
        cam.stop()
    assert cam.grabbed == 16 and cam.slot.captured == 8
    assert [int(img[0, 0, 0]) for img in stream.retrieved] == list(range(0, 16, 2))


def test_camera_on_request_stream_converts_only_when_asked():
    # A snapshot (main) stream: decoded all along, converted only for a snapshot.
    img = np.zeros((4, 4, 3), np.uint8)

    class Endless(ScriptedStream):
        def read(self):
            time.sleep(0.002)  # the source's own pace, as a camera's
            return True, img

    stream = Endless([])
    cam = Camera("main", scripted_opener(stream), ListSink(), role="snapshot", on_request=True)
    cam.start()
    try:
        wait_until(lambda: cam.grabbed > 20, what="grabbed frames")
        assert stream.retrieved == [] and cam.latest() is None
        frame = cam.request(10.0)
        assert frame is not None and frame.seq == 1
        assert cam.request(10.0).seq == 2
    finally:
        cam.stop()
    assert len(stream.retrieved) == 2 and cam.grabbed > 20


def test_camera_on_demand_stream_opens_when_woken_and_closes_after_linger():
    clock = StepClock()
    img = np.zeros((4, 4, 3), np.uint8)
    opened = []

    def opener():
        def later():
            clock.now += 5.0  # past linger_s without a wake

        src = ScriptedStream([img, img, later, img] + [img] * 50)
        opened.append(src)
        return src

    cam = Camera(
        "main", opener, ListSink(), clock=clock, role="snapshot", on_request=True,
        on_demand=True, linger_s=2.0,
    )  # fmt: skip
    cam.start()
    try:
        assert cam.state == "starting" and not opened  # nobody asked: not opened
        frame = cam.request(10.0)
        assert frame is not None and len(opened) == 1
        wait_until(lambda: cam.state == "idle", what="the stream to close after linger_s")
        assert opened[0].done.is_set() and opened[0].steps  # released early
    finally:
        cam.stop()
    assert len(opened) == 1
