"""Command flow control through a real Mosquitto (issue 11 item 5).

A flood of QoS 1 commands must never be dropped after the broker has its
PUBACK: each gets an answer (`ok` or `busy`), and a `disarm` sent in the middle
of the flood is executed and answered before the flood is done.
"""

from __future__ import annotations

import json

import paho.mqtt.client as mqtt
import pytest
from agent_harness import SimulatedPost
from conftest import wait_for
from linkage_helpers import linkage_config
from platform_client import Platform

FLOOD = 1000


@pytest.mark.timeout(180)
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_flood_of_pings_is_answered_and_a_disarm_gets_through(
    protocol, tmp_path, mosquitto, county_factory, schemas
):
    config = linkage_config(tmp_path, mosquitto.port, protocol=protocol)
    county = county_factory(mosquitto.port)
    post = SimulatedPost(config)
    platform = None
    try:
        assert post.agent.uplink.connected.wait(10)
        platform = Platform(
            mosquitto.port,
            post.agent.topics.base,
            config.device.id,
            protocol=mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311,
        )
        pings = [platform.body("ping") for _ in range(FLOOD)]
        disarm = platform.body("disarm", {"zones": ["crossing"]})
        for body in pings[: FLOOD // 2]:
            platform.publish("ping", body)
        platform.publish("disarm", disarm)
        for body in pings[FLOOD // 2 :]:
            platform.publish("ping", body)

        wanted = {b["id"] for b in pings} | {disarm["id"]}

        def answered() -> set[str]:
            return {r["id"] for r, _corr, _topic in platform.responses} & wanted

        wait_for(lambda: answered() == wanted, 120, "an answer to every command")
        responses = [r for r, _corr, _topic in platform.responses if r["id"] in wanted]
        assert len(responses) == FLOOD + 1  # one answer each, none twice
        for r in responses:
            assert r["ok"] or r["error"]["code"] == "busy", r
        order = [r["id"] for r in responses]
        # The disarm was not pushed out nor starved behind the pings sent after it.
        answer = responses[order.index(disarm["id"])]
        assert answer["ok"] is True, answer
        assert answer["result"]["zones"]["crossing"]["state"] == "disarmed"
        assert order.index(disarm["id"]) < len(order) - 1
        assert post.agent.arming.state("crossing").state == "disarmed"
        # Events still flow through the outbox on the same client.
        assert county.wait_for(
            lambda m: any(
                e["data"].get("command_id") == disarm["id"] for e in county.events("status.arming")
            ),
            30,
        )
        stats = post.agent.control.stats
        assert stats.received == FLOOD + 1
        for r, _corr, topic in platform.responses:
            if r["id"] in wanted:
                schemas.check(topic, json.dumps(r).encode())
    finally:
        if platform is not None:
            platform.close()
        post.stop()
