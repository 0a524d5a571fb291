"""GB 50394 alarm handling: latched until acknowledged, held outputs, panic and tamper always on."""

from __future__ import annotations

import pytest
from agent_harness import SimulatedPost
from linkage_helpers import linkage_config, pin_on_periods, wait_until
from platform_client import Platform

from shaobing.agent.config import validate_config
from shaobing.agent.latching import Latches, LatchingConfig, OpenAlarm

KEY = b"county-shared-secret-0123456789"
RESET = {"id": "reset-1", "pin": 5, "kind": "reset", "contact": "NO", "zone": "cabinet"}
SIREN_RULE = {
    "cooldown_s": 0,
    "rules": [{"zone": "crossing", "outputs": [{"output": "siren-1", "duration_s": 0.2}]}],
}


def make_config(tmp_path, port, latching: dict, **kw):
    config = linkage_config(tmp_path, port, linkage=SIREN_RULE, cameras=[], **kw)
    data = config.model_dump(mode="json")
    data["latching"] = latching
    data["inputs"].append(RESET)
    checked = validate_config(data)
    assert checked is not None
    return checked


@pytest.fixture
def posts():
    made: list = []
    yield made
    for item in reversed(made):
        (item.close if isinstance(item, Platform) else item.stop)()


def alarms_of(post) -> list[dict]:
    return post.agent.sink.open_alarms()


def test_unacknowledged_alarm_holds_its_siren_until_the_cap(tmp_path, mosquitto, posts):
    config = make_config(tmp_path, mosquitto.port, {"hold_max_s": 1.5})
    post = SimulatedPost(config)
    posts.append(post)
    post.wiring.trigger("pir-1")
    assert wait_until(lambda: post.wiring.output_on("siren-1"), 5)
    post.wiring.restore("pir-1")
    assert wait_until(lambda: alarms_of(post) and alarms_of(post)[0]["restored"], 5)
    # The rule says 0.2 s; held, the siren runs until acknowledged, capped at 1.5 s.
    assert wait_until(lambda: pin_on_periods(post.factory.pin(24)), 15)
    (period,) = pin_on_periods(post.factory.pin(24))
    assert period >= 1.45
    # The siren stopped by itself but the alarm stays open: nobody has seen it yet.
    (alarm,) = alarms_of(post)
    assert alarm["type"] == "alarm.intrusion" and not alarm["acknowledged"]


def test_signed_acknowledge_command_closes_alarm_stops_outputs_and_is_recorded(
    tmp_path, mosquitto, county_factory, schemas, posts, monkeypatch
):
    monkeypatch.setenv("SHAOBING_TEST_KEY", KEY.decode())
    control = {"key_env": "SHAOBING_TEST_KEY"}
    config = make_config(tmp_path, mosquitto.port, {"hold_max_s": 600}, control=control)
    county = county_factory(mosquitto.port)
    post = SimulatedPost(config)
    posts.append(post)
    assert post.agent.uplink.connected.wait(10)
    platform = Platform(mosquitto.port, post.agent.topics.base, config.device.id, key=KEY)
    posts.append(platform)
    post.wiring.trigger("pir-1")
    assert wait_until(lambda: post.wiring.output_on("siren-1"), 5)
    (alarm,) = alarms_of(post)
    post.wiring.restore("pir-1")
    assert wait_until(lambda: alarms_of(post)[0]["restored"], 5)
    assert post.wiring.output_on("siren-1")  # restored is not acknowledged

    unsigned = platform.body("acknowledge", {}, signed=False)
    assert platform.send("acknowledge", unsigned)["error"]["code"] == "unsigned"
    assert alarms_of(post)
    response = platform.command("acknowledge", {"zones": ["crossing"]})
    assert response["ok"], response
    assert response["result"]["acknowledged"] == [alarm["alarm_id"]]
    assert wait_until(lambda: not post.wiring.output_on("siren-1"), 5)
    assert alarms_of(post) == []
    assert county.wait_for(lambda m: county.events("status.acknowledge"), 10)
    (ack,) = county.events("status.acknowledge")
    assert ack["data"]["by"] == "command" and ack["data"]["alarm_ids"] == [alarm["alarm_id"]]
    assert ack["data"]["outputs_stopped"] == ["siren-1"] and ack["data"]["still_active"] == []
    assert ack["data"]["command_id"] == response["id"]
    for message in county.messages:
        schemas.check(message.topic, message.payload)
    for body, _, _ in platform.responses:
        assert not list(schemas.response.iter_errors(body)), body


def test_local_reset_key_acknowledges_and_an_active_input_closes_on_restore(
    tmp_path, mosquitto, county_factory, posts
):
    config = make_config(tmp_path, mosquitto.port, {"hold_max_s": 600})
    county = county_factory(mosquitto.port)
    post = SimulatedPost(config)
    posts.append(post)
    post.wiring.trigger("pir-1")
    assert wait_until(lambda: post.wiring.output_on("siren-1"), 5)
    post.wiring.trigger("reset-1")  # the key switch on the cabinet
    assert wait_until(lambda: not post.wiring.output_on("siren-1"), 5)
    (alarm,) = alarms_of(post)
    assert alarm["acknowledged"] and alarm["state"] == "acknowledged, input still in alarm"
    post.wiring.restore("pir-1")
    assert wait_until(lambda: alarms_of(post) == [], 5)
    post.wiring.restore("reset-1")
    assert county.wait_for(lambda m: county.events("status.acknowledge"), 10)
    (ack,) = county.events("status.acknowledge")
    assert ack["data"]["by"] == "local" and ack["data"]["who"] == "reset-1"
    assert ack["data"]["still_active"] == [alarm["alarm_id"]]
    assert not county.events("status.reset")  # the key itself is not an event


def test_without_latching_a_restore_closes_the_alarm(tmp_path, mosquitto, posts):
    config = make_config(tmp_path, mosquitto.port, {"enabled": False})
    post = SimulatedPost(config)
    posts.append(post)
    post.wiring.trigger("pir-1")
    assert wait_until(lambda: alarms_of(post), 5)
    post.wiring.restore("pir-1")
    assert wait_until(lambda: alarms_of(post) == [], 5)
    # Not held: the rule's 0.2 s pattern ran and ended by itself.
    assert wait_until(lambda: pin_on_periods(post.factory.pin(24)), 10)


def test_latches_unit():
    latches = Latches(LatchingConfig())
    latches.opened(OpenAlarm("a1", "alarm.intrusion", "z1", "gpio:pir-1", 1, outputs=["s"]))
    latches.opened(OpenAlarm("a2", "alarm.tamper", "z2", "gpio:t-1", 2, outputs=["s"]))
    assert latches.held_outputs() == {"s"}
    assert [a.alarm_id for a in latches.acknowledge(["z1"])] == ["a1"]
    assert latches.held_outputs() == {"s"}  # a2 still holds the siren
    assert latches.acknowledge(["z1"]) == []  # nothing twice
    latches.restored("alarm.intrusion", "gpio:pir-1", "z1")
    assert [a["alarm_id"] for a in latches.open()] == ["a2"]


@pytest.mark.parametrize(
    ("arming", "message"),
    [
        ({"always_armed": []}, "a panic input cannot be disarmed"),
        ({"always_reported": []}, "tamper is reported armed or disarmed"),
    ],
)
def test_panic_and_tamper_cannot_be_configured_away(tmp_path, arming, message):
    config = linkage_config(tmp_path, 1883)
    data = config.model_dump(mode="json")
    data["arming"].update(arming)
    found: list = []
    validate_config(data, problems=found)
    assert any(message in str(p) for p in found), found


def test_panic_reports_and_sounds_in_a_disarmed_zone(tmp_path, mosquitto, county_factory, posts):
    config = make_config(
        tmp_path,
        mosquitto.port,
        {"hold_max_s": 600},
        arming={"zones": [{"zone": "crossing", "mode": "disarmed"}]},
    )
    county = county_factory(mosquitto.port)
    post = SimulatedPost(config)
    posts.append(post)
    post.wiring.trigger("panic-1")
    assert county.wait_for(lambda m: county.events("alarm.panic"), 10)
    assert wait_until(lambda: post.wiring.output_on("siren-1"), 5)
    assert [a["type"] for a in alarms_of(post)] == ["alarm.panic"]
