"""End to end through a real Mosquitto: GPIO -> outbox -> MQTT -> an independent subscriber."""

from __future__ import annotations

import time

import pytest
from agent_harness import SimulatedPost
from conftest import config_for


def test_panic_button_reaches_county_once_with_location(
    tmp_path, mosquitto, county_factory, schemas
):
    county = county_factory(mosquitto.port)
    post = SimulatedPost(config_for(tmp_path, mosquitto.port))
    try:
        assert county.wait_for(lambda m: any(x.topic.endswith("/state") for x in m), 5)
        pressed = time.monotonic()
        post.wiring.trigger("panic-1")
        assert county.wait_for(lambda m: len(county.events("alarm.panic")) >= 1, 5)
        latency = time.monotonic() - pressed
        post.wiring.restore("panic-1")
        assert county.wait_for(lambda m: len(county.events("alarm.panic.restore")) == 1, 5)
    finally:
        post.stop()
    assert latency < 1.0, f"alarm took {latency:.3f}s"
    panics = [e for e in county.events() if e["type"] == "alarm.panic"]
    assert len(panics) == 1
    alarm = panics[0]
    assert alarm["zone"]["id"] == "crossing"
    assert alarm["zone"]["railway"] == {
        "line": "京广线",
        "start": "K361+200",
        "end": "K361+450",
        "side": "双线",
    }
    assert alarm["site"]["village_code"] == "130521104201"
    assert alarm["source"] == {"kind": "gpio", "id": "panic-1"}
    assert alarm["data"]["state"] == "alarm" and alarm["severity"] == "critical"
    assert "replayed" not in alarm
    for message in county.messages:
        schemas.check(message.topic, message.payload)
    states = [m.json()["state"] for m in county.messages if m.topic.endswith("/state")]
    assert states[0] == "online" and states[-1] == "stopped"


@pytest.mark.parametrize("contact_input", ["pir-1", "door-1", "tamper-1"])
def test_nc_inputs_alarm_on_open_contact(
    tmp_path, mosquitto, county_factory, schemas, contact_input
):
    county = county_factory(mosquitto.port)
    post = SimulatedPost(config_for(tmp_path, mosquitto.port))
    try:
        post.wiring.cut_wire(contact_input)  # an NC loop that opens is an alarm
        assert county.wait_for(
            lambda m: any(e["source"]["id"] == contact_input for e in county.events("alarm")), 5
        )
    finally:
        post.stop()
    (event,) = [e for e in county.events("alarm") if e["source"]["id"] == contact_input]
    assert event["data"]["contact"] == "NC" and event["data"]["state"] == "alarm"
    for message in county.messages:
        schemas.check(message.topic, message.payload)


def test_input_already_in_alarm_at_start_is_reported(tmp_path, mosquitto, county_factory):
    from gpiozero.pins.mock import MockFactory

    from shaobing.agent.runtime import Agent
    from shaobing.simulator.gpio import VirtualWiring

    county = county_factory(mosquitto.port)
    config = config_for(tmp_path, mosquitto.port)
    factory = MockFactory()
    agent = Agent(config, pin_factory=factory)
    wiring = VirtualWiring(factory, config.inputs)
    wiring.rest()
    wiring.trigger("tamper-1")  # cabinet open while the box boots
    agent.start()
    try:
        assert county.wait_for(lambda m: len(county.events("alarm.tamper")) == 1, 5)
    finally:
        agent.stop()
    assert county.events("alarm.tamper")[0]["data"]["at_start"] is True


def test_mqtt_311_is_selectable(tmp_path, mosquitto, county_factory, schemas):
    county = county_factory(mosquitto.port)
    post = SimulatedPost(config_for(tmp_path, mosquitto.port, protocol="3.1.1"))
    try:
        post.wiring.trigger("panic-1")
        assert county.wait_for(lambda m: len(county.events("alarm.panic")) == 1, 5)
    finally:
        post.stop()
    for message in county.messages:
        schemas.check(message.topic, message.payload)
