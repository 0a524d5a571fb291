"""A command's id, effect and result survive a crash together (issue 11 item 11).

A real `shaobing run` is frozen at a pause point (core/pause_points.py) in the
middle of executing a `disarm`, SIGKILLed there, and started again; the
platform then retries the same command id, as it does when an answer is lost.
Whatever the kill interrupted, the zone ends disarmed and the answer says so.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import paho.mqtt.client as mqtt
import pytest
import yaml
from conftest import EXAMPLE, wait_for
from platform_client import Platform

from shaobing.agent.config import load_config
from shaobing.agent.topics import Topics
from shaobing.simulator.county import County


def _post(tmp_path, port: int, protocol: str) -> tuple:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["mqtt"].update({"port": port, "protocol": protocol, "reconnect_max_s": 1})
    data["storage"]["path"] = str(tmp_path / "outbox.db")
    data["gpio"]["backend"] = "mock"
    data["gpio"]["allow_mock"] = True
    data["control"]["require_signature"] = False
    cfg = tmp_path / "post.yaml"
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True))
    config = load_config(cfg)
    topics = Topics(config.mqtt.topic_prefix, config.site.village_code, config.device.id)
    return cfg, topics, config.device.id


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("point", "protocol"), [("command_started", "5"), ("command_applied", "3.1.1")]
)
def test_a_disarm_cut_by_a_crash_is_retried_to_the_truth(
    tmp_path, mosquitto, county_factory, schemas, point, protocol
):
    cfg, topics, device = _post(tmp_path, mosquitto.port, protocol)
    marker = tmp_path / "paused"
    log = open(tmp_path / "agent.log", "ab")  # noqa: SIM115 (closed at the end)
    live = County("127.0.0.1", mosquitto.port, topic=f"{topics.base}/state")
    county = county_factory(mosquitto.port)
    procs: list[subprocess.Popen] = []

    def start(**env: str) -> subprocess.Popen:
        live.messages.clear()
        proc = subprocess.Popen(
            [sys.executable, "-m", "shaobing.cli.main", "run", "--config", str(cfg)],
            stdout=subprocess.DEVNULL,
            stderr=log,
            env={**os.environ, **env},
        )
        procs.append(proc)
        assert live.wait_for(lambda m: any(x.json()["state"] == "online" for x in m), 30), (
            tmp_path / "agent.log"
        ).read_text()[-2000:]
        wait_for(subscribed, 30, "the agent's command subscription")
        return proc

    def subscribed() -> bool:
        # "online" is published before the subscription is served: a ping proves it.
        try:
            return platform.send("ping", platform.body("ping"), timeout=1)["ok"]
        except TimeoutError:
            return False

    v5 = protocol == "5"
    platform = Platform(
        mosquitto.port, topics.base, device, protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311
    )
    try:
        proc = start(SHAOBING_PAUSE_AT=f"{point}:disarm", SHAOBING_PAUSE_FILE=str(marker))
        disarm = platform.body("disarm", {"zones": ["crossing"]}, ttl_ms=600_000)
        platform.publish("disarm", disarm)
        wait_for(marker.exists, 30, f"the agent paused at {point}")
        os.kill(proc.pid, signal.SIGKILL)  # the power cut, exactly there
        proc.wait(10)
        assert not [r for r, _c, _t in platform.responses if r["id"] == disarm["id"]]

        proc = start()
        answer = platform.send("disarm", disarm, timeout=30)
        if answer["ok"]:  # the effect had never happened: it ran now
            zones = answer["result"]["zones"]
        else:  # it had: the answer it really had
            assert answer["error"]["code"] == "replayed", answer
            assert answer["original"]["ok"] is True, answer
            zones = answer["original"]["result"]["zones"]
        assert zones["crossing"]["state"] == "disarmed", answer
        assert (point == "command_started") == answer["ok"], answer

        # A second retry is refused as replayed, with the same true result.
        again = platform.send("disarm", disarm, timeout=30)
        assert again["error"]["code"] == "replayed"
        assert again["original"]["result"]["zones"]["crossing"]["state"] == "disarmed"

        # The platform sees the change as an event too, even if the kill cut it off.
        assert county.wait_for(
            lambda m: any(
                e["data"]["command_id"] == disarm["id"] and e["data"]["state"] == "disarmed"
                for e in county.events("status.arming")
            ),
            30,
        )
        for response, _corr, topic in platform.responses:
            schemas.check(topic, json.dumps(response).encode())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        arm_state = json.loads((tmp_path / "arming.json").read_text())
        assert arm_state["overrides"]["crossing"]["state"] == "disarmed"
        assert arm_state["overrides"]["crossing"]["by"] == disarm["id"]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
        platform.close()
        live.close()
        log.close()
