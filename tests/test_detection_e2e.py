"""Camera -> real detector -> outbox -> real Mosquitto -> an independent subscriber."""

from __future__ import annotations

from agent_harness import SimulatedPost
from conftest import config_for
from detection_support import V1, need_shared

from shaobing.agent.detection.config import CameraConfig, CameraZone, DetectorConfig


def test_detection_intrusion_reaches_county_with_snapshot(
    tmp_path, mosquitto, county_factory, schemas
):
    need_shared()
    county = county_factory(mosquitto.port)
    base = config_for(tmp_path, mosquitto.port)
    config = base.model_copy(
        update={
            "cameras": [
                CameraConfig(
                    id="cam-crossing",
                    source="sim:person-crossing?fps=20&loop=0",
                    zones=[
                        CameraZone(
                            id="crossing", polygon=[(0.4, 0.0), (0.6, 0.0), (0.6, 1.0), (0.4, 1.0)]
                        )
                    ],
                    snapshot_max_bytes=30_000,
                )
            ],
            "detector": DetectorConfig(model=str(V1)),
        }
    )
    post = SimulatedPost(config)
    try:
        assert county.wait_for(
            lambda m: (
                any(e["data"]["phase"] == "end" for e in county.events("alarm.intrusion"))
                and any("/snapshot/" in x.topic for x in m)
            ),
            30,
        )
    finally:
        post.stop()
    intrusions = county.events("alarm.intrusion")
    # The simulated camera replays the scene after it ends; judge the first crossing.
    first = [e for e in intrusions if e["data"]["track_id"] == intrusions[0]["data"]["track_id"]]
    assert [e["data"]["phase"] for e in first] == ["start", "end"]
    start, end = first
    assert start["zone"]["id"] == "crossing" and start["zone"]["railway"]["line"] == "京广线"
    assert start["source"] == {"kind": "camera", "id": "cam-crossing"}
    assert start["data"]["label"] == "person" and start["severity"] == "major"
    assert start["data"]["track_id"] == end["data"]["track_id"]
    snaps = [m for m in county.messages if m.topic.endswith(f"/snapshot/{start['id']}")]
    assert len(snaps) == 1 and len(snaps[0].payload) == start["data"]["snapshot_bytes"] <= 30_000
    for message in county.messages:
        schemas.check(message.topic, message.payload)


def test_detection_missing_model_keeps_agent_running(tmp_path, mosquitto, county_factory):
    county = county_factory(mosquitto.port)
    base = config_for(tmp_path, mosquitto.port)
    config = base.model_copy(
        update={
            "cameras": [CameraConfig(id="cam-1", source="sim:empty")],
            "detector": DetectorConfig(model=str(tmp_path / "absent.tflite")),
        }
    )
    post = SimulatedPost(config)
    try:
        assert county.wait_for(lambda m: len(county.events("fault.detector")) == 1, 10)
        post.wiring.trigger("panic-1")
        assert county.wait_for(lambda m: len(county.events("alarm.panic")) == 1, 10)
    finally:
        post.stop()
    assert "absent.tflite does not exist" in county.events("fault.detector")[0]["data"]["reason"]
