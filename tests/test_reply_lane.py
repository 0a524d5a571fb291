"""Replies stay in their lane (issue 12 item 5), through a real Mosquitto with MQTT 5.

A command's ResponseTopic is honoured only under ``control.reply_prefix``
(default: the device's own ``.../cmd/response``); anything else is answered on
``.../cmd/response``, logged and counted, and nothing is published where the
command asked.
"""

from __future__ import annotations

import json
import logging
import time
import uuid

import paho.mqtt.client as mqtt
import pytest
import yaml
from agent_harness import SimulatedPost
from hypothesis import given
from hypothesis import strategies as st
from linkage_helpers import linkage_config
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from shaobing.agent.config import ControlConfig, load_config
from shaobing.agent.reply_lane import in_lane
from shaobing.simulator.county import County

OTHER_BOX = "sb-130521-other-box-07"


class Asker:
    """A platform-side MQTT 5 client that chooses its ResponseTopic per command."""

    def __init__(self, port: int, base: str):
        self.base = base
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.connect("127.0.0.1", port, 30)
        self.client.loop_start()

    def ping(self, response_topic: str) -> bytes:
        now = int(time.time() * 1000)
        body = {"v": 1, "id": f"c-{uuid.uuid4().hex[:16]}", "issued_ms": now}
        body |= {"expires_ms": now + 60_000, "args": {}}
        correlation = uuid.uuid4().bytes
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = response_topic
        props.CorrelationData = correlation
        self.client.publish(
            f"{self.base}/cmd/ping", json.dumps(body).encode(), qos=1, properties=props
        ).wait_for_publish(10)
        return correlation

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def post_factory(tmp_path, mosquitto):
    made: list = []

    def start(control: dict | None = None) -> SimulatedPost:
        config = linkage_config(tmp_path, mosquitto.port, control=control or {})
        path = tmp_path / "shaobing.yaml"
        path.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_defaults=True)))
        post = SimulatedPost(load_config(path), config_path=path)
        made.append(post)
        assert post.agent.uplink.connected.wait(10)
        return post

    yield start
    for post in made:
        post.stop()


def test_reply_into_another_box_tree_goes_to_the_lane_instead(post_factory, mosquitto, caplog):
    post = post_factory()
    base = post.agent.topics.base
    village = post.agent.config.site.village_code
    other_tree = f"shaobing/v1/{village}/{OTHER_BOX}"
    # Independent witnesses: everything on the broker, and the other box's tree.
    everything = County("127.0.0.1", mosquitto.port, topic="#")
    other_box = County("127.0.0.1", mosquitto.port, topic=f"{other_tree}/#")
    asker = Asker(mosquitto.port, base)
    try:
        with caplog.at_level(logging.WARNING, logger="shaobing.control"):
            forged = f"{other_tree}/event/alarm/panic"
            asker.ping(forged)
            lane = f"{base}/cmd/response"
            assert everything.wait_for(
                lambda m: any(x.topic == lane and x.json()["cmd"] == "ping" for x in m), 10
            ), [x.topic for x in everything.messages]
            # A second command answered in the lane proves the first one's
            # answer (published before it, same connection) is all there is.
            mine = f"{base}/cmd/response/{uuid.uuid4().hex}"
            asker.ping(mine)
            assert everything.wait_for(lambda m: any(x.topic == mine for x in m), 10)
        assert not [x for x in everything.messages if x.topic.startswith(other_tree)]
        assert other_box.messages == []
        assert post.agent.control.stats.replies_redirected == 1
        assert post.agent.health.snapshot()["control"]["replies_redirected"] == 1
        refusals = [r for r in caplog.records if "outside the reply lane" in r.getMessage()]
        assert len(refusals) == 1
        assert refusals[0].fields["response_topic"] == forged
    finally:
        asker.close()
        everything.close()
        other_box.close()


def test_reply_prefix_configured_for_the_platform(post_factory, mosquitto):
    device = "sb-130521-dongguan-01"
    post = post_factory({"reply_prefix": f"county/replies/{device}"})
    assert post.agent.config.device.id == device
    base = post.agent.topics.base
    everything = County("127.0.0.1", mosquitto.port, topic="#")
    asker = Asker(mosquitto.port, base)
    try:
        wanted = f"county/replies/{device}/desk-3"
        asker.ping(wanted)
        assert everything.wait_for(lambda m: any(x.topic == wanted for x in m), 10)
        # With a configured prefix, even the device's own sub-lane is outside it.
        asker.ping(f"{base}/cmd/response/desk-3")
        asker.ping(f"county/replies/{device}-not-quite")
        lane = f"{base}/cmd/response"
        assert everything.wait_for(lambda m: sum(x.topic == lane for x in m) == 2, 10)
        assert post.agent.control.stats.replies_redirected == 2
    finally:
        asker.close()
        everything.close()


BASE = "shaobing/v1/130521104201/sb-1"
LANE = f"{BASE}/cmd/response"


@pytest.mark.parametrize(
    ("topic", "prefix", "allowed"),
    [
        (LANE, LANE, True),
        (f"{LANE}/desk-1", LANE, True),
        (f"{LANE}x", LANE, False),
        (f"{BASE}/event/alarm/panic", LANE, False),
        ("shaobing/v1/130521104201/sb-2/event/alarm/panic", LANE, False),
        ("county/replies/sb-1/a", "county/replies/sb-1", True),
        ("county/replies/sb-10/a", "county/replies/sb-1", False),
        (f"{BASE}/state", "shaobing/v1", False),  # never the own tree outside the lane
        (f"{LANE}/+", LANE, False),
        (f"{LANE}/#", LANE, False),
        ("", LANE, False),
        ("$SYS/broker", "$SYS", False),
    ],
)
def test_in_lane(topic, prefix, allowed):
    assert in_lane(topic, prefix, BASE, LANE) is allowed


@given(st.text(max_size=80))
def test_in_lane_never_leaves_the_prefix(topic):
    if in_lane(topic, LANE, BASE, LANE):
        assert topic == LANE or topic.startswith(LANE + "/")
        assert not set("+#\x00") & set(topic)


@pytest.mark.parametrize("bad", ["a/#", "a/+/b", "/a", "a/", "$SYS/x", ""])
def test_reply_prefix_must_be_a_plain_topic(bad):
    with pytest.raises(ValueError, match="reply_prefix"):
        ControlConfig(reply_prefix=bad)
