"""Settings bundles (issue 17 item 3): `shaobing config install` from a USB stick, and a
live change undone in service by the watch, both through the one config-write path."""

from __future__ import annotations

import json
import stat
import time

import pytest
import yaml
from bundle_support import county_key, post_trusting_county
from conftest import wait_for
from gpiozero.pins.mock import MockFactory
from linkage_helpers import linkage_config

from shaobing.agent.command_signature import sign_ed25519
from shaobing.agent.config import load_config
from shaobing.agent.config_bundle import sign
from shaobing.agent.config_watch import ConfigWatch
from shaobing.agent.control import Incoming
from shaobing.agent.runtime import Agent
from shaobing.cli.main import main
from shaobing.cli.schemes import CAMERA_SCHEMES
from shaobing.core.events import Source

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def post(tmp_path):
    return post_trusting_county(tmp_path)


def _install(bundle, path, capsys, *lang) -> tuple[int, str]:
    code = main([*lang, "config", "install", str(bundle), "--config", str(path)])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_usb_install_writes_through_the_one_path_and_refuses_what_it_must(post, tmp_path, capsys):
    key, path = post
    stick = tmp_path / "usb"
    stick.mkdir()

    def bundle(patch, version, signer=key):
        out = stick / f"settings-v{version}.json"
        out.write_text(json.dumps(sign(patch, signer, version)))
        return out

    code, said = _install(bundle({"linkage": {"cooldown_s": 42}}, 3), path, capsys)
    assert code == 0, said
    assert "settings v3 written" in said and "systemctl restart shaobing" in said
    assert load_config(path).linkage.cooldown_s == 42 and "settings bundle v3" in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_config(path.with_name("shaobing.yaml.prev")).linkage.cooldown_s != 42
    watch = ConfigWatch(tmp_path)
    begun = watch.current()
    assert begun["version"] == 3 and begun["restart"] and begun["until"] is None
    assert "linkage" in begun["scope"]["sections"]
    assert not watch.on_start(path) and watch.current()["until"] > time.time()  # next start
    written = path.read_bytes()

    forged = sign({"linkage": {"cooldown_s": 1}}, key, 4)
    forged["header"]["patch"]["linkage"]["cooldown_s"] = 2
    (stick / "forged.json").write_text(json.dumps(forged))
    stranger, _ = county_key(tmp_path, "stranger")
    refusals = {
        "forged": (stick / "forged.json", "the signature does not match"),
        "stale": (bundle({"linkage": {"cooldown_s": 7}}, 3), "not newer than"),
        "protected": (bundle({"mqtt": {"host": "evil.example"}}, 5), "mqtt.host"),
        "stranger": (bundle({"linkage": {"cooldown_s": 5}}, 6, stranger), "does not trust"),
        "invalid": (bundle({"linkage": {"cooldown_s": -1}}, 7), "linkage.cooldown_s"),
    }
    for name, (file, why) in refusals.items():
        code, said = _install(file, path, capsys)
        assert code == 1 and "refused, nothing was written" in said and why in said, (name, said)
    code, said = _install(stick / "missing.json", path, capsys)
    assert code == 1 and "cannot read it" in said
    code, said = _install(refusals["protected"][0], path, capsys, "--lang", "zh-CN")
    assert code == 1 and "已拒绝，未写入任何内容" in said and "mqtt.host" in said
    assert path.read_bytes() == written and ConfigWatch(tmp_path).current()["version"] == 3


def test_a_live_change_is_undone_when_a_camera_it_changed_goes_down(tmp_path):
    key, public = county_key(tmp_path)
    base = linkage_config(tmp_path, 1)
    data = base.model_dump(mode="json", exclude_defaults=True)
    data["control"]["command_keys"] = [str(public)]
    data["cameras"] = [
        {
            "id": "cam-1",
            "source": "sim:person-crossing?fps=2",
            "zones": [{"id": "crossing", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]]}],
        }
    ]
    path = tmp_path / "shaobing.yaml"
    path.write_text(yaml.safe_dump(data))
    agent = Agent(
        load_config(path),
        pin_factory=MockFactory(),
        config_path=path,
        camera_schemes=CAMERA_SCHEMES,
    )
    agent.uplink.publish_direct = lambda *a, **kw: None  # constructed, not started
    try:
        old_zones = agent.config.cameras[0].zones
        half = [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]
        smaller = {**data["cameras"][0], "zones": [{"id": "crossing", "polygon": half}]}
        now = int(time.time() * 1000)
        body = sign_ed25519(
            {"id": "cu-1", "issued_ms": now, "expires_ms": now + 60_000,
             "args": {"bundle": sign({"cameras": [smaller]}, key, 1)}},
            "config_update", agent.config.device.id, key,
        )  # fmt: skip
        payload = json.dumps(body).encode()
        topic = f"{agent.topics.base}/cmd/config_update"
        answer = agent.control.handle(Incoming(topic, payload, len(payload), None, None))
        assert answer["ok"] and answer["result"]["applied"] == ["cameras"], answer
        assert agent.config.cameras[0].zones != old_zones

        agent.settings.turn()  # nothing new is wrong yet
        assert ConfigWatch(tmp_path).current()["version"] == 1
        # The camera whose settings changed goes down, as its driver reports it.
        down = {"state": "down", "reason": "stopped delivering frames", "source": "sim"}
        agent.recorder.emit("fault.camera", Source(kind="camera", id="cam-1"), data=down)
        agent.settings.turn()
        assert agent.config.cameras[0].zones == old_zones  # undone live, no restart
        assert not agent.restart_requested.is_set()
        assert load_config(path).cameras[0].zones == old_zones
        assert ConfigWatch(tmp_path).current() is None
        reports = _updates(agent)
        assert [r["phase"] for r in reports] == ["rolled_back"], reports
        report = reports[0]
        assert report["verdict"] == "fault" and report["version"] == 1
        assert "fault.camera on camera:cam-1" in report["reason"]
        assert agent._versions()["config_bundle"] is None
    finally:
        agent.stop()


def test_a_change_that_waited_for_a_restart_is_confirmed_once_its_window_ran(post, tmp_path):
    key, path = post
    bundle = tmp_path / "settings-v2.json"
    patch = {"health": {"interval_s": 120}, "updates": {"watch_s": 0.5}}
    bundle.write_text(json.dumps(sign(patch, key, 2)))
    assert main(["config", "install", str(bundle), "--config", str(path)]) == 0
    watch = ConfigWatch(tmp_path)
    assert not watch.on_start(path)  # `shaobing run`: the window begins with this start
    agent = Agent(load_config(path), pin_factory=MockFactory(), config_path=path)
    try:
        agent.start()  # every worker runs; no broker is needed for this
        assert watch.current() is None or watch.current()["baseline"] == []

        def reports():
            return _updates(agent)

        wait_for(reports, 30, "confirmed")
        wait_for(lambda: watch.current() is None, 10, "the watch ended")
        assert reports() == [
            {"phase": "confirmed", "update_id": None, "target": "config", "version": 2}
        ]
        assert agent._versions()["config_bundle"] == 2
    finally:
        agent.stop()


def test_a_crash_loop_undone_at_start_is_reported_once_the_agent_runs(post, tmp_path):
    key, path = post
    bundle = tmp_path / "settings-v2.json"
    bundle.write_text(json.dumps(sign({"health": {"interval_s": 120}}, key, 2)))
    assert main(["config", "install", str(bundle), "--config", str(path)]) == 0
    watch = ConfigWatch(tmp_path)
    # `shaobing run` on each start: the fourth within the window is one too many.
    assert [watch.on_start(path) for _ in range(4)] == [False, False, False, True]
    config = load_config(path)
    assert config.health.interval_s != 120
    agent = Agent(config, pin_factory=MockFactory(), config_path=path)
    try:
        agent.start()
        [report] = wait_for(lambda: _updates(agent), 30, "the rollback reported")
        assert report["phase"] == "rolled_back" and report["verdict"] == "crash_loop"
        assert report["target"] == "config" and report["version"] == 2
        assert "shaobing.yaml.failed" in report["message"]
        assert agent._versions()["config_bundle"] is None
    finally:
        agent.stop()


def _updates(agent: Agent) -> list[dict]:
    """The status.update events the agent recorded (no broker needed)."""
    agent.outbox.flush()
    return [
        json.loads(row.payload)["data"]
        for row in agent.outbox.next_rows({}, 500)
        if row.event_type == "status.update"
    ]
