"""Tracking in seconds, one alarm per crossing, stationary objects (issue 13 items 3, 4).

Real models and real pictures: the person cut from ``squat.bmp`` walks across the
road of ``traffic_0001.bmp`` (two parked cars) and behind a pole. The full
matrix (20 crossings x 2 models x 3 rates x colour/grey) is
``python -m benchmarks.crossings``; here a reduced matrix keeps the budget.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from detection_support import MEDIA, V1, default_model_path, need_shared

from shaobing.agent.detection.config import CameraConfig, CameraZone, DetectorConfig, TrackerConfig
from shaobing.agent.detection.detector import Detector
from shaobing.agent.detection.pipeline import DetectionPipeline
from shaobing.agent.detection.tracker import IouTracker
from shaobing.agent.detection.types import Box, Detection
from shaobing.simulator.crossing import CROSSING_ZONE, CrossingSpec, run_crossing


def det(label="person", score=0.9, box=(0.1, 0.3, 0.2, 0.9)) -> Detection:
    return Detection(label, 0, score, Box(*box), (640, 360))


@pytest.fixture(scope="module")
def v1():
    need_shared()
    return Detector(V1)


@pytest.fixture(scope="module")
def default_detector():
    path = default_model_path()
    return Detector("blazepose-person", model_dir=path.parent)


# -- one alarm per crossing ----------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "fps", "ir", "walk_s", "pole_x"),
    [
        ("v1", 5, False, 4.7, 0.52),
        ("v1", 15, True, 4.3, 0.47),
        ("default", 5, True, 4.5, 0.45),
    ],
    ids=["v1-5fps-colour", "v1-15fps-grey", "default-5fps-grey"],
)
def test_detection_crossing_gives_one_alarm_lifecycle(model, fps, ir, walk_s, pole_x, request):
    detector = request.getfixturevalue("v1" if model == "v1" else "default_detector")
    # Empty road just long enough to gate, and to see the lost track end.
    spec = CrossingSpec(fps=fps, ir=ir, walk_s=walk_s, pole_x=pole_x, before_s=0.6, after_s=2.6)
    run = run_crossing(detector, spec)
    assert run.phases() == ["start", "end"], run.events
    (t_start, start), (t_end, end) = run.events
    assert start["label"] == "person" and start["track_id"] == end["track_id"]
    assert t_start >= run.scene.centre_passes(0.3) - 0.05, (t_start, start)
    # The end comes once the person has really left the zone (his centre past its
    # right edge), not while the pole hides him in the middle of it.
    assert t_end >= run.scene.centre_passes(0.7) - 0.05, (t_end, end)
    assert end["reason"] in ("left_zone", "lost")
    # The parked cars stand in the zone but cannot alarm there: frames without
    # the person were gated, not inferred.
    assert run.idle > 0


# -- the tracker, in seconds -----------------------------------------------------------


def walk(fps: float, seconds: float, gaps: tuple[tuple[float, float], ...] = ()):
    """(time, detections) of a person walking right at 0.15 frame widths per second."""
    for i in range(round(seconds * fps)):
        t = i / fps
        x = 0.05 + 0.15 * t
        hidden = any(a <= t < b for a, b in gaps)
        yield t, [] if hidden else [det(box=(x, 0.3, x + 0.1, 0.9))]


@pytest.mark.parametrize("fps", [5, 15, 25])
def test_detection_tracker_confirms_and_loses_in_seconds_at_any_rate(fps):
    cfg = TrackerConfig(confirm_s=0.4, lost_after_s=1.0)
    tr = IouTracker(cfg)
    confirmed_at, ids, ended_at = None, set(), None
    # Hidden 0.8 s (< lost_after_s) mid-walk: the same track carries on after it.
    for t, dets in walk(fps, 3.0, gaps=((1.0, 1.8),)):
        seen, ended = tr.update(dets, t)
        ids |= {s.id for s in seen}
        if confirmed_at is None and any(s.confirmed(t, cfg.confirm_s) for s in seen):
            confirmed_at = t
        assert not ended
    assert ids == {1}
    assert confirmed_at is not None and 0.4 <= confirmed_at < 0.4 + 1 / fps + 1e-9
    # Then gone: ended once unseen for lost_after_s, whatever the rate.
    for i in range(1, 3 * fps):
        t = 3.0 + i / fps
        _, ended = tr.update([], t)
        if ended:
            ended_at = t - (3.0 - 1 / fps)  # since the last sighting
            break
    assert ended_at is not None and 1.0 <= ended_at < 1.0 + 1 / fps + 1e-9


def test_detection_tracker_duplicate_box_is_not_a_second_object():
    tr = IouTracker(TrackerConfig())
    tr.update([det(box=(0.1, 0.3, 0.2, 0.9))], 0.0)
    # The model returns the person twice: the whole body, and a second box
    # over his upper body (IoU about 0.5, past the NMS limit).
    seen, _ = tr.update(
        [det(box=(0.11, 0.3, 0.21, 0.9)), det(score=0.6, box=(0.1, 0.3, 0.21, 0.62))], 0.2
    )
    assert [t.id for t in seen] == [1] and len(tr.tracks) == 1
    # Another person beside him is a second object.
    seen, _ = tr.update([det(box=(0.12, 0.3, 0.22, 0.9)), det(box=(0.3, 0.3, 0.4, 0.9))], 0.4)
    assert sorted(t.id for t in seen) == [1, 2]


def test_detection_tracker_marks_still_objects_stationary():
    tr = IouTracker(TrackerConfig(stationary_after_s=3.0))
    car = det("car", box=(0.2, 0.6, 0.5, 0.8))
    for i in range(15):
        tr.update([car], i * 0.2)
    assert not tr.tracks[0].stationary  # 2.8 s still
    tr.update([car], 3.0)
    assert tr.tracks[0].stationary
    # It drives off: moving again.
    tr.update([det("car", box=(0.3, 0.6, 0.6, 0.8))], 4.2)
    assert not tr.tracks[0].stationary


def test_detection_tracker_frame_keys_map_to_seconds_with_a_warning():
    with pytest.warns(FutureWarning, match=r"tracker\.max_missed .*lost_after_s"):
        cfg = TrackerConfig.model_validate({"min_hits": 3, "max_missed": 4, "exit_inferences": 2})
    assert (cfg.confirm_s, cfg.lost_after_s, cfg.exit_after_s) == (0.4, 1.0, 0.4)
    with pytest.raises(ValueError, match=r"tracker\.max_missed must be a whole number"):
        TrackerConfig.model_validate({"max_missed": "many"})


# -- stationary objects: parked cars cost what an empty scene costs ----------------------


def _idle_run(detector, image, zone: CameraZone, cfg: DetectorConfig, seconds=30.0, fps=5.0):
    clock_t = [0.0]
    sink_events: list[dict] = []

    class Sink:
        def emit(self, type, source, **kw):
            if type == "alarm.intrusion":
                sink_events.append(kw["data"])

    cam = CameraConfig(id="cam", source="sim:traffic", zones=[zone])
    pipe = DetectionPipeline(detector, [cam], Sink(), cfg, clock=lambda: clock_t[0])
    c = pipe.camera("cam")
    for i in range(round(seconds * fps)):
        clock_t[0] = i / fps
        pipe.offer(c, image)
    return c, sink_events


def test_detection_parked_cars_cost_what_an_empty_scene_costs(v1):
    road = cv2.resize(cv2.imread(str(MEDIA / "traffic_0001.bmp")), (640, 360))
    empty = np.full_like(road, 90)
    cfg = DetectorConfig()
    parked, events = _idle_run(v1, road, CROSSING_ZONE, cfg)
    nothing, _ = _idle_run(v1, empty, CROSSING_ZONE, cfg)
    assert parked.tracker.tracks, "the model should see the parked cars"
    assert {t.det.label for t in parked.tracker.tracks} >= {"car"}
    assert events == []
    assert parked.inferences == nothing.inferences == 1
    assert parked.idle == nothing.idle == 149


def test_detection_stationary_alarm_is_rechecked_at_an_interval(v1):
    road = cv2.resize(cv2.imread(str(MEDIA / "traffic_0001.bmp")), (640, 360))
    # A zone that alarms on cars: the parked car raises one alarm, then is only
    # re-checked every stationary_interval_s once it is stationary.
    zone = CameraZone(id="yard", polygon=[(0, 0), (1, 0), (1, 1), (0, 1)], labels=["car"])
    tracker = TrackerConfig(stationary_after_s=4.0, stationary_interval_s=5.0)
    c, events = _idle_run(v1, road, zone, DetectorConfig(tracker=tracker), seconds=30.0)
    assert [e["phase"] for e in events].count("start") >= 1
    assert all(e["phase"] != "end" for e in events)  # still there: the alarm holds
    assert all(t.stationary for t in c.tracker.tracks)
    # ~4 s at 5 fps until stationary, then one check per 5 s of the remaining 26 s.
    assert 20 <= c.inferences <= 4 * 5 + 1 + 26 / 5 + 1, c.inferences
