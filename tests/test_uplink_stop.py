"""A clean stop leaves the retained state `stopped`, not the broker's will (issue 11 item 4).

A real `shaobing run` process is stopped by SIGTERM or SIGINT; after it has
exited, a subscriber that connects late reads the retained state.
"""

from __future__ import annotations

import signal
import subprocess
import sys

import paho.mqtt.client as mqtt
import pytest
import yaml
from conftest import EXAMPLE

PROTOCOLS = {"5": mqtt.MQTTv5, "3.1.1": mqtt.MQTTv311}


@pytest.mark.timeout(90)
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_clean_stop_leaves_retained_state_stopped(
    tmp_path, mosquitto, county_factory, schemas, protocol, sig
):
    data = yaml.safe_load(EXAMPLE.read_text())
    data["mqtt"].update({"port": mosquitto.port, "protocol": protocol, "reconnect_max_s": 1})
    data["storage"]["path"] = str(tmp_path / "outbox.db")
    data["gpio"]["backend"] = "mock"
    cfg = tmp_path / "post.yaml"
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True))
    topic = "shaobing/+/+/+/state"

    watcher = county_factory(mosquitto.port, topic=topic, protocol=PROTOCOLS[protocol])
    proc = subprocess.Popen(
        [sys.executable, "-m", "shaobing.agent.cli", "run", "--config", str(cfg)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert watcher.wait_for(lambda ms: any(m.json()["state"] == "online" for m in ms), 30), (
            "the agent never came online"
        )
        proc.send_signal(sig)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    # The process is gone: whatever the broker does about its connection has
    # been done. A platform that connects now reads the retained state.
    late = county_factory(mosquitto.port, topic=topic, protocol=PROTOCOLS[protocol])
    assert late.wait_for(lambda ms: any(m.retain for m in ms), 10), "no retained state"
    retained = [m for m in late.messages if m.retain]
    assert [m.json()["state"] for m in retained] == ["stopped"]
    schemas.check(retained[0].topic, retained[0].payload)
    # The live watcher saw `stopped` and never the will.
    states = [m.json()["state"] for m in watcher.messages]
    assert "offline" not in states, states
