"""Video verification with the real camera pipeline and a real COCO detector.

The simulator's camera shows real pictures (a real person pasted on a
background, real traffic frames, or an empty scene); the pipeline's TFLite
detector decides. Skipped when ../shared (models, media) is absent.
"""

from __future__ import annotations

import pytest
from agent_harness import SimulatedPost
from detection_support import V1, need_shared
from linkage_helpers import linkage_config, wait_until

from shaobing.agent.config import validate_config


def camera_post(tmp_path, port, scene: str) -> SimulatedPost:
    data = linkage_config(tmp_path, port).model_dump(mode="json")
    # A camera without zones of its own: it raises no alarm, it only verifies
    # the PIR's alarms in the zone that lists it (zones[].cameras).
    data["cameras"] = [{"id": "cam-1", "source": f"sim:{scene}", "snapshot_max_bytes": 30_000}]
    data["detector"] = {"model": str(V1)}
    data["linkage"]["verify"]["timeout_s"] = 10
    return SimulatedPost(validate_config(data))


@pytest.mark.parametrize(
    ("scene", "result", "label"),
    [
        ("person-crossing?fps=10&idle=0&steps=1000", "verified", "person"),
        ("traffic?fps=5", "verified", "car"),
        ("empty?fps=10", "unverified", None),
    ],
)
def test_real_detector_verifies_the_alarm(
    tmp_path, mosquitto, county_factory, schemas, scene, result, label
):
    need_shared()
    county = county_factory(mosquitto.port)
    post = camera_post(tmp_path, mosquitto.port, scene)
    try:
        assert post.agent.detection is not None, "the detector did not load"
        # Frames flowing before the alarm, as on a running post.
        camera = post.agent.detection.camera("cam-1").camera
        assert wait_until(lambda: camera.latest() is not None, 15)
        post.wiring.trigger("pir-1")
        assert county.wait_for(lambda m: county.events("status.verification"), 20)
    finally:
        post.stop()
    (alarm,) = [e for e in county.events("alarm.intrusion") if e["source"]["kind"] == "gpio"]
    (verdict,) = county.events("status.verification")
    assert verdict["data"]["alarm_id"] == alarm["id"]
    assert verdict["data"]["result"] == result, verdict["data"]
    if label:
        assert label in verdict["data"]["labels"]
        assert min(verdict["data"]["scores"]) >= 0.5
        snaps = [m for m in county.messages if m.topic.endswith(f"/snapshot/{verdict['id']}")]
        assert len(snaps) == 1 and snaps[0].payload[:2] == b"\xff\xd8"
        assert len(snaps[0].payload) <= 30_000
    else:
        assert verdict["data"]["reason"] == "nothing_of_interest"
        assert verdict["data"]["frames"] >= 1
    for message in county.messages:
        schemas.check(message.topic, message.payload)
