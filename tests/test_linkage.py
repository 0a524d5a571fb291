"""Linkage end to end through a real Mosquitto: arming, outputs, verification, cooldown.

The camera pipeline is not merged yet: verification uses ``FakeCamera``, a
test double of the ``Verifier`` protocol with fixed answers (tests/fake_camera.py).
"""

from __future__ import annotations

import pytest
from agent_harness import SimulatedPost
from fake_camera import FakeCamera
from linkage_helpers import DEFAULT_LINKAGE, linkage_config, pin_on_periods, wait_until

from shaobing.core.events import Source


def siren_pin(post):
    return post.factory.pin(24)


def of_type(county, event_type: str) -> list[dict]:
    return [e for e in county.events(event_type) if e["type"] == event_type]


def check_all(county, schemas) -> None:
    for message in county.messages:
        schemas.check(message.topic, message.payload)


@pytest.fixture
def post_factory():
    made = []

    def make(config, **options):
        post = SimulatedPost(config, **options)
        made.append(post)
        return post

    yield make
    for post in made:
        post.stop()


def test_fence_alarm_in_armed_zone_sounds_and_is_verified(
    tmp_path, mosquitto, county_factory, schemas, post_factory
):
    county = county_factory(mosquitto.port)
    camera = FakeCamera({"cam-1": "person"})
    post = post_factory(linkage_config(tmp_path, mosquitto.port), verifier=camera)
    assert county.wait_for(lambda m: any(x.topic.endswith("/state") for x in m), 5)

    post.wiring.trigger("pir-1")  # the PIR stands in for a fence detector here
    assert county.wait_for(lambda m: of_type(county, "alarm.intrusion"), 5)
    assert wait_until(lambda: post.wiring.output_on("siren-1"), 5)
    assert county.wait_for(lambda m: county.events("status.verification"), 10)
    assert wait_until(lambda: not post.wiring.output_on("siren-1"), 10)

    (alarm,) = of_type(county, "alarm.intrusion")
    (verdict,) = county.events("status.verification")
    assert verdict["data"]["alarm_id"] == alarm["id"]
    assert verdict["data"]["result"] == "verified"
    assert verdict["data"]["labels"] == ["person"] and verdict["data"]["scores"] == [0.91]
    assert verdict["data"]["camera"] == "cam-1" and verdict["data"]["snapshot"] is True
    assert verdict["zone"]["id"] == "crossing" and verdict["severity"] == alarm["severity"]
    assert verdict["seq"] > alarm["seq"]
    topics = [m.topic for m in county.messages]
    alarm_at = next(i for i, t in enumerate(topics) if t.endswith("/event/alarm/intrusion"))
    verdict_at = next(i for i, t in enumerate(topics) if t.endswith("/event/status/verification"))
    assert alarm_at < verdict_at  # the alarm never waits for its verification
    assert county.wait_for(
        lambda m: any(x.topic.endswith(f"/snapshot/{verdict['id']}") for x in m), 5
    )
    # The siren ran its whole configured duration (lower bound only: a slow
    # machine may stretch it, never shorten it).
    periods = pin_on_periods(siren_pin(post))
    assert len(periods) == 1 and periods[0] >= 0.95
    assert camera.calls and camera.calls[0][0] == ("cam-1",)
    check_all(county, schemas)


def test_empty_scene_is_unverified_without_snapshot(
    tmp_path, mosquitto, county_factory, schemas, post_factory
):
    county = county_factory(mosquitto.port)
    post = post_factory(
        linkage_config(tmp_path, mosquitto.port), verifier=FakeCamera({"cam-1": "empty"})
    )
    post.wiring.trigger("pir-1")
    assert county.wait_for(lambda m: county.events("status.verification"), 10)
    (alarm,) = of_type(county, "alarm.intrusion")
    (verdict,) = county.events("status.verification")
    assert verdict["data"]["alarm_id"] == alarm["id"]
    assert verdict["data"]["result"] == "unverified"
    assert verdict["data"]["reason"] == "nothing_of_interest"
    assert verdict["data"]["labels"] == [] and verdict["data"]["snapshot"] is False
    assert verdict["severity"] == "info"
    assert not any("/snapshot/" in m.topic for m in county.messages)
    assert wait_until(lambda: pin_on_periods(siren_pin(post)), 10)
    check_all(county, schemas)


def test_disarmed_zone_no_siren_no_intrusion_but_tamper(
    tmp_path, mosquitto, county_factory, schemas, post_factory
):
    county = county_factory(mosquitto.port)
    config = linkage_config(
        tmp_path,
        mosquitto.port,
        arming={"zones": [{"zone": "crossing", "mode": "disarmed"}]},
        linkage={**DEFAULT_LINKAGE, "cooldown_s": 0.3},
        tamper_zone="crossing",
    )
    post = post_factory(config, verifier=FakeCamera({"cam-1": "person"}))
    post.wiring.trigger("pir-1")
    post.wiring.cut_wire("tamper-1")
    assert county.wait_for(lambda m: of_type(county, "alarm.tamper"), 5)
    assert county.wait_for(lambda m: county.events("status.suppressed"), 5)
    post.wiring.restore("pir-1")
    post.wiring.restore("tamper-1")
    assert county.wait_for(lambda m: county.events("alarm.tamper.restore"), 5)
    post.stop()  # flushes pending summaries; nothing more can come after this

    assert not county.events("alarm.intrusion")  # neither the alarm nor its restore
    assert not county.events("status.verification")
    (tamper,) = of_type(county, "alarm.tamper")
    assert tamper["zone"]["id"] == "crossing"
    (summary,) = county.events("status.suppressed")
    assert summary["data"]["reason"] == "disarmed"
    assert summary["data"]["alarm_type"] == "alarm.intrusion"
    assert summary["data"]["count"] == 1 and summary["data"]["sources"] == ["gpio:pir-1"]
    assert not any(s.state for s in siren_pin(post).states)
    check_all(county, schemas)


def test_panic_sounds_in_a_disarmed_zone(
    tmp_path, mosquitto, county_factory, schemas, post_factory
):
    county = county_factory(mosquitto.port)
    config = linkage_config(
        tmp_path, mosquitto.port, arming={"default_mode": "disarmed"}, cameras=[]
    )
    post = post_factory(config)
    post.wiring.trigger("panic-1")
    assert county.wait_for(lambda m: of_type(county, "alarm.panic"), 5)
    assert wait_until(lambda: post.wiring.output_on("siren-1"), 5)
    check_all(county, schemas)


def test_any_source_perimeter_alarm_is_linked_and_folded(
    tmp_path, mosquitto, county_factory, schemas, post_factory
):
    """Linkage is source-agnostic: a serial fence detector's event gets the same rules."""
    county = county_factory(mosquitto.port)
    camera = FakeCamera({"cam-1": "vehicle"})
    linkage = {**DEFAULT_LINKAGE, "cooldown_s": 3}
    config = linkage_config(tmp_path, mosquitto.port, linkage=linkage)
    post = post_factory(config, verifier=camera)
    fence = Source(kind="modbus", id="fence-1")
    first = post.agent.sink.emit(
        "alarm.perimeter", fence, zone="crossing", data={"segment": 3, "state": "alarm"}
    )
    assert first is not None
    post.agent.sink.emit("alarm.perimeter.restore", fence, zone="crossing", data={"segment": 3})
    # The intruder keeps shaking the same fence segment within the cooldown window.
    for _ in range(4):
        assert post.agent.sink.emit("alarm.perimeter", fence, zone="crossing", data={}) is None
        post.agent.sink.emit("alarm.perimeter.restore", fence, zone="crossing", data={})
    assert county.wait_for(lambda m: county.events("status.verification"), 10)
    assert wait_until(lambda: pin_on_periods(siren_pin(post)), 10)
    # The summary comes when the window closes.
    assert county.wait_for(lambda m: county.events("status.suppressed"), 15)
    post.stop()

    (alarm,) = of_type(county, "alarm.perimeter")
    assert alarm["id"] == first.id and alarm["source"] == {"kind": "modbus", "id": "fence-1"}
    assert len(county.events("alarm.perimeter.restore")) == 1
    (verdict,) = county.events("status.verification")
    assert verdict["data"]["alarm_id"] == first.id and verdict["data"]["labels"] == ["car"]
    (summary,) = county.events("status.suppressed")
    assert summary["data"]["reason"] == "cooldown" and summary["data"]["count"] == 4
    assert summary["data"]["alarm_id"] == first.id
    assert len(pin_on_periods(siren_pin(post))) == 1  # one siren, not five
    assert len(camera.calls) == 1
    check_all(county, schemas)


@pytest.mark.parametrize(
    ("verifier", "reason"),
    [
        (None, "no_verifier"),
        (FakeCamera({"cam-1": "dark"}), "no_frames"),
        (FakeCamera({"cam-1": "stuck"}), "timeout"),
    ],
)
def test_verification_always_ends_in_a_verdict(
    tmp_path, mosquitto, county_factory, schemas, post_factory, verifier, reason
):
    county = county_factory(mosquitto.port)
    linkage = {**DEFAULT_LINKAGE, "verify": {"timeout_s": 0.5}}
    post = post_factory(
        linkage_config(tmp_path, mosquitto.port, linkage=linkage), verifier=verifier
    )
    try:
        post.wiring.trigger("pir-1")
        assert county.wait_for(lambda m: of_type(county, "alarm.intrusion"), 5)
        assert county.wait_for(lambda m: county.events("status.verification"), 10)
    finally:
        if verifier is not None:
            verifier.release.set()
    (verdict,) = county.events("status.verification")
    assert verdict["data"]["result"] == "unverified" and verdict["data"]["reason"] == reason
    check_all(county, schemas)


def test_zone_without_cameras_gets_no_verification(
    tmp_path, mosquitto, county_factory, schemas, post_factory
):
    county = county_factory(mosquitto.port)
    camera = FakeCamera({"cam-1": "person"})
    post = post_factory(linkage_config(tmp_path, mosquitto.port, cameras=[]), verifier=camera)
    post.wiring.trigger("pir-1")
    assert county.wait_for(lambda m: of_type(county, "alarm.intrusion"), 5)
    assert wait_until(lambda: pin_on_periods(siren_pin(post)), 10)
    post.stop()
    assert not county.events("status.verification") and not camera.calls
    check_all(county, schemas)
