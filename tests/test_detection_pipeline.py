from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
from detection_support import RUNTIME, V1, default_model_path, need_shared
from fake_camera import ScriptedSource, scripted_opener
from sinks import ListSink

from shaobing.agent.camera_verifier import PipelineVerifier
from shaobing.agent.detection.config import (
    CameraConfig,
    CameraZone,
    DetectorConfig,
    LabelFilter,
    MotionConfig,
    TrackerConfig,
)
from shaobing.agent.detection.detector import Detector
from shaobing.agent.detection.motion import MotionGate
from shaobing.agent.detection.pipeline import DetectionPipeline
from shaobing.agent.detection.snapshot import encode_capped
from shaobing.agent.detection.tracker import IouTracker
from shaobing.agent.detection.types import Box, Detection
from shaobing.agent.detection.zones import CameraZones
from shaobing.agent.verification import CameraDown
from shaobing.cli.schemes import CAMERA_SCHEMES
from shaobing.simulator.camera import Scene, SceneSpec

TRACK_ZONE = CameraZone(
    id="track-1", name="K12 up line", polygon=[(0.4, 0.0), (0.6, 0.0), (0.6, 1.0), (0.4, 1.0)]
)


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def det(label="person", score=0.9, box=(0.1, 0.1, 0.3, 0.9)) -> Detection:
    return Detection(label, 0, score, Box(*box), (640, 360))


@pytest.fixture(scope="module")
def v1():
    need_shared()
    return Detector(V1, runtime=RUNTIME)


@pytest.fixture(scope="module")
def default_detector():
    path = default_model_path()
    need_shared()
    return Detector("blazepose-person", model_dir=path.parent, runtime=RUNTIME)


def intrusions(sink: ListSink):
    return sink.of_type("alarm.intrusion")


@pytest.mark.parametrize("which", ["v1", "default"])
def test_detection_person_crossing_zone_gives_one_start_and_one_end(which, request):
    detector = request.getfixturevalue("v1" if which == "v1" else "default_detector")
    sink, clock = ListSink(), FakeClock()
    cam = CameraConfig(
        id="cam-rail",
        source="sim:person-crossing",
        zones=[TRACK_ZONE],
        filters={"person": LabelFilter(min_score=0.5)},
        snapshot_max_bytes=20_000,
    )
    cfg = DetectorConfig(tracker=TrackerConfig(update_interval_s=None))
    pipe = DetectionPipeline(detector, [cam], sink, cfg, clock=clock, schemes=CAMERA_SCHEMES)
    scene = Scene(SceneSpec(loop=False))
    c = pipe.camera("cam-rail")
    for i in range(scene.length):
        pipe.process(c, scene.frame(i))
        clock.t += 0.1
    events = intrusions(sink)
    assert [e.data["phase"] for e in events] == ["start", "end"]
    start, end = events
    assert start.zone == end.zone == "track-1"
    assert start.data["track_id"] == end.data["track_id"]
    assert start.data["label"] == "person" and start.data["score"] >= 0.5
    assert start.source.kind == "camera" and start.source.id == "cam-rail"
    assert end.data["reason"] == "left_zone" and end.data["duration_s"] > 0
    x0, _, x1, y1 = start.data["box"]
    assert 0.4 <= (x0 + x1) / 2 <= 0.6 and y1 > 0.8
    jpeg = start.attachment
    assert jpeg is not None and len(jpeg) <= 20_000 and jpeg[:2] == b"\xff\xd8"
    assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR) is not None
    assert end.attachment is None


def test_detection_ir_scene_still_alarms(v1):
    sink, clock = ListSink(), FakeClock()
    cam = CameraConfig(id="ir", source="sim:empty", zones=[TRACK_ZONE])
    pipe = DetectionPipeline(v1, [cam], sink, DetectorConfig(), clock=clock, schemes=CAMERA_SCHEMES)
    scene = Scene(SceneSpec(ir=True, loop=False))
    for i in range(scene.length):
        pipe.process(pipe.camera("ir"), scene.frame(i))
        clock.t += 0.1
    phases = [(e.data["phase"], e.data["night_ir"]) for e in intrusions(sink)]
    assert phases == [("start", True), ("end", True)]


def test_detection_threaded_pipeline_with_sim_cameras(v1):
    sink = ListSink()
    cams = [
        CameraConfig(id="rail", source="sim:person-crossing?fps=25", zones=[TRACK_ZONE]),
        CameraConfig(id="yard", source="sim:empty?fps=25", zones=[TRACK_ZONE]),
    ]
    pipe = DetectionPipeline(
        v1, cams, sink, DetectorConfig(stats_interval_s=0.5), schemes=CAMERA_SCHEMES
    )
    pipe.start()
    try:
        sink.wait_for(
            lambda ev: (
                any(e.type == "alarm.intrusion" and e.data["phase"] == "end" for e in ev)
                and any(e.type == "status.detection" for e in ev)
            ),
            timeout=60,
        )
    finally:
        pipe.stop()
    by_track: dict[int, list[str]] = {}
    for e in intrusions(sink):
        assert e.source.id == "rail"
        by_track.setdefault(e.data["track_id"], []).append(e.data["phase"])
    first = next(iter(by_track.values()))
    assert first == ["start", "end"]
    assert all(p.count("start") == 1 and p.count("end") <= 1 for p in by_track.values())
    stats = {s.id: s for s in pipe.stats()}
    assert stats["rail"].inferences > 0 and stats["yard"].idle > stats["yard"].inferences
    status = sink.of_type("status.detection")[0]
    assert {c["id"] for c in status.data["cameras"]} == {"rail", "yard"}


def test_detection_scheduler_is_fair_and_counts_drops(v1):
    sink = ListSink()
    # Every frame offered (no motion gate): this is about the scheduler's fairness.
    cams = [
        CameraConfig(id=f"c{i}", source="sim:traffic?fps=200", motion=MotionConfig(enabled=False))
        for i in range(2)
    ]
    pipe = DetectionPipeline(v1, cams, sink, DetectorConfig(), schemes=CAMERA_SCHEMES)
    pipe.start_cameras()
    try:
        while min(s.inferences for s in pipe.stats()) < 15:
            pipe.step()
    finally:
        pipe.stop()
    a, b = pipe.stats()
    assert abs(a.inferences - b.inferences) <= 2
    assert a.dropped > 0 and b.dropped > 0
    assert a.captured >= a.inferences + a.dropped


def test_detection_motion_gate():
    need_shared()
    scene = Scene(SceneSpec())
    gate = MotionGate(MotionConfig())
    empty = scene.frame(0)
    assert gate.check(empty)  # first frame: nothing to compare with
    assert not gate.check(scene.frame(1))  # same empty scene, new frame
    assert gate.check(scene.frame(10))  # a person appeared
    mask = np.full((256, 256), 255, np.uint8)
    mask[:, :] = 0  # everything masked
    masked = MotionGate(MotionConfig(), mask)
    masked.check(empty)
    assert not masked.check(scene.frame(10))
    assert MotionGate(MotionConfig(enabled=False)).check(empty)


def test_detection_zones_filters_and_masks():
    cfg = CameraConfig(
        id="c",
        source="0",
        zones=[
            CameraZone(id="gate", polygon=[(0, 0.5), (0.5, 0.5), (0.5, 1), (0, 1)], labels=["car"]),
            TRACK_ZONE,
        ],
        masks=[[(0.55, 0.0), (0.6, 0.0), (0.6, 1.0), (0.55, 1.0)]],
        filters={"person": LabelFilter(min_score=0.6, min_area=0.01, max_area=0.5)},
    )
    z = CameraZones(cfg, default_min_score=0.5)
    # Bottom centre decides, not the box: the head is outside, the feet inside.
    assert z.zone_of(det(box=(0.4, 0.0, 0.6, 0.9))).id == "track-1"
    assert z.zone_of(det(box=(0.0, 0.0, 0.3, 0.45))) is None
    assert z.zone_of(det("car", box=(0.1, 0.6, 0.3, 0.9))).id == "gate"
    assert z.zone_of(det("person", box=(0.1, 0.6, 0.3, 0.9))) is None  # gate is cars only
    assert z.zone_of(det(box=(0.5, 0.2, 0.65, 0.9))) is None  # feet in the mask
    assert z.passes(det(score=0.7)) and not z.passes(det(score=0.55))
    assert not z.passes(det(box=(0.1, 0.1, 0.12, 0.12)))  # too small
    assert z.passes(det("dog", score=0.5)) and not z.passes(det("dog", score=0.4))


def test_detection_tracker_keeps_identity_and_ends_lost_tracks():
    tr = IouTracker(TrackerConfig(lost_after_s=1.5))
    seen, ended = tr.update([det(box=(0.1, 0.1, 0.3, 0.9))], 0.0)
    tid = seen[0].id
    seen, _ = tr.update([det(box=(0.12, 0.1, 0.32, 0.9)), det("car", box=(0.6, 0.6, 0.9, 0.9))], 1)
    assert {t.id for t in seen} == {tid, tid + 1}
    assert next(t for t in seen if t.id == tid).hits == 2
    # A car where the person was is another object.
    seen, _ = tr.update([det("car", box=(0.12, 0.1, 0.32, 0.9))], 2)
    assert tid not in {t.id for t in seen}
    _, ended = tr.update([], 3)  # missed twice, unseen for 2 s
    assert tid in {t.id for t in ended}


def test_detection_snapshot_respects_byte_cap():
    need_shared()
    frame = cv2.resize(Scene(SceneSpec()).frame(12), (1920, 1080))
    for cap in (8_000, 30_000):
        data = encode_capped(frame, cap)
        assert len(data) <= cap
        assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None


def test_detection_example_config_validates():
    from pathlib import Path

    from shaobing.agent.config import load_config

    config = load_config(Path(__file__).resolve().parents[1] / "examples" / "railway-camera.yaml")
    assert [c.id for c in config.cameras] == ["cam-track", "cam-road"]
    assert config.cameras[0].zones[0].id == "k361-track"
    assert config.detector.model == "blazepose-person"


def test_detection_camera_zone_must_exist_in_root_zones():
    from shaobing.agent.config import validate_config

    problems = []
    data = {
        "device": {"id": "sb-test-01"},
        "site": {"village_code": "130521104201", "code_year": 2023, "village_name": "东关村"},
        "zones": [{"id": "track"}],
        "cameras": [
            {
                "id": "c1",
                "source": "0",
                "zones": [{"id": "nope", "polygon": [[0, 0], [1, 0], [1, 1]]}],
            }
        ],
    }
    assert validate_config(data, problems=problems) is None
    assert any("zone 'nope' is not defined" in p.message for p in problems)


def test_detection_snapshot_of_a_camera_that_is_down_is_refused(v1):
    # Issue 11 item 6: a down camera's last frame is from before the outage;
    # the snapshot command must not hand it out as the scene now.
    sink = ListSink()
    img = np.full((64, 64, 3), 80, np.uint8)
    source = ScriptedSource([img, img])
    cams = [CameraConfig(id="gate", source="sim:empty", backoff_min_s=5.0)]
    pipe = DetectionPipeline(
        v1, cams, sink, DetectorConfig(), openers={"gate": scripted_opener(source)}
    )
    verifier = PipelineVerifier(pipe, {"person"}, 0.5)
    camera = pipe.camera("gate").camera
    camera.start()
    try:
        sink.wait_for(lambda ev: any(e.data.get("state") == "down" for e in ev))
        assert camera.latest() is not None  # the pre-outage frame is still there
        with pytest.raises(CameraDown, match="camera gate is down"):
            verifier.snapshot("gate", time.monotonic() + 5)
    finally:
        camera.stop()
