"""Settings bundles in service (issue 17 item 3) with a real Mosquitto and a real `shaobing run`:
a change that takes a camera down is rolled back within its watch window and reported;
a good change is confirmed when the window passes."""

from __future__ import annotations

import socket

import pytest
import yaml
from agent_process import AgentProcess
from conftest import EXAMPLE, wait_for
from county_key import COUNTY, local_test_config
from platform_client import Platform

from shaobing.agent.config_bundle import sign
from shaobing.agent.runtime import EXIT_RESTART

pytestmark = pytest.mark.timeout(240)

CAMERA = {
    "id": "cam-crossing",
    "source": "sim:person-crossing?fps=4",
    "zones": [{"id": "crossing", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]]}],
}


def _closed_port() -> int:
    """A loopback port nobody listens on: a camera there never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(tmp_path, port: int):
    data = yaml.safe_load(EXAMPLE.read_text())
    data["mqtt"].update({"port": port, "reconnect_max_s": 1})
    data["storage"]["path"] = str(tmp_path / "data" / "outbox.db")
    data["gpio"].update({"backend": "mock", "allow_mock": True})
    local_test_config(data, tmp_path)
    data["cameras"] = [CAMERA]
    data["health"]["interval_s"] = 2
    data["updates"] = {"watch_s": 90}
    path = tmp_path / "post.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path, data


def _updates(county) -> list[dict]:
    return [e["data"] for e in county.events("status.update")]


def test_a_camera_change_that_faults_is_rolled_back_and_a_good_one_confirmed(
    tmp_path, mosquitto, county_factory, schemas
):
    cfg, data = _post(tmp_path, mosquitto.port)
    device = data["device"]["id"]
    county = county_factory(mosquitto.port)
    agent = AgentProcess(cfg, tmp_path / "agent.log").start()
    platform = Platform(
        mosquitto.port, f"shaobing/v1/{data['site']['village_code']}/{device}", device
    )
    try:
        wait_for(lambda: _answered(platform), 60, "the agent answers commands")

        # 1. The camera pointed at an address that never answers: it needs a restart.
        broken = {**CAMERA, "source": f"rtsp://127.0.0.1:{_closed_port()}/stream"}
        answer = platform.command(
            "config_update", {"bundle": sign({"cameras": [broken]}, COUNTY, 1)}
        )
        assert answer["ok"] and answer["result"]["restart_required"] == ["cameras"], answer
        assert platform.command("restart")["ok"]
        assert agent.proc.wait(60) == EXIT_RESTART, agent.tail()
        agent.start()  # systemd's Restart=: the new settings run, on probation
        assert county.wait_for(
            lambda m: any(u["phase"] == "rolled_back" for u in _updates(county)), 90
        ), (_updates(county), agent.tail())
        rolled = next(u for u in _updates(county) if u["phase"] == "rolled_back")
        assert rolled["target"] == "config" and rolled["verdict"] == "fault"
        assert rolled["version"] == 1 and "camera:cam-crossing" in rolled["reason"], rolled
        # Undoing a change that needed a restart is a restart on the old file.
        assert agent.proc.wait(60) == EXIT_RESTART, agent.tail()
        assert yaml.safe_load(cfg.read_text())["cameras"][0]["source"] == CAMERA["source"]
        recovered = len(county.events("fault.camera"))
        agent.start()
        wait_for(lambda: _answered(platform), 60, "the agent answers commands again")
        assert county.wait_for(
            lambda m: any(
                e["data"]["state"] == "recovered" for e in county.events("fault.camera")[recovered:]
            ),
            60,
        ), county.events("fault.camera")

        # 2. A good change applied live: confirmed once its (short) window passes.
        good = sign({"linkage": {"cooldown_s": 5}, "updates": {"watch_s": 2}}, COUNTY, 2)
        answer = platform.command("config_update", {"bundle": good})
        assert answer["ok"] and answer["result"]["restart_required"] == [], answer
        assert county.wait_for(
            lambda m: any(
                u["phase"] == "confirmed" and u.get("version") == 2 for u in _updates(county)
            ),
            60,
        ), _updates(county)
        assert county.wait_for(
            lambda m: any(
                e["data"]["versions"].get("config_bundle") == 2
                for e in county.events("status.health")
            ),
            30,
        )
        assert not any(u["phase"] == "rolled_back" and u["version"] == 2 for u in _updates(county))
    finally:
        platform.close()
        if agent.proc.poll() is None:
            agent.stop()
    for message in county.messages:
        schemas.check(message.topic, message.payload)


def _answered(platform: Platform) -> bool:
    try:
        return platform.send("ping", platform.body("ping"), timeout=5)["ok"]
    except TimeoutError:
        return False
