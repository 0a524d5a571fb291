"""Signed settings bundles (issue 17 item 3): a county's config patch through the one
config-write path, protected settings refused, replays and forgeries refused."""

from __future__ import annotations

import json
import time

import pytest
from bundle_support import county_key, post_trusting_county
from gpiozero.pins.mock import MockFactory

from shaobing.agent.command_signature import sign_ed25519
from shaobing.agent.config import load_config
from shaobing.agent.config_bundle import sign
from shaobing.agent.config_watch import ConfigWatch
from shaobing.agent.control import Incoming
from shaobing.agent.runtime import Agent
from shaobing.cli.main import main

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def post(tmp_path):
    key, path = post_trusting_county(tmp_path)
    agent = Agent(load_config(path), pin_factory=MockFactory(), config_path=path)
    agent.uplink.publish_direct = lambda *a, **kw: None  # constructed, not started
    n = iter(range(1000))

    def command(bundle: dict) -> dict:
        now = int(time.time() * 1000)
        body = {"id": f"cu-{next(n)}", "issued_ms": now, "expires_ms": now + 60_000}
        body = sign_ed25519(
            {**body, "args": {"bundle": bundle}}, "config_update", agent.config.device.id, key
        )
        payload = json.dumps(body).encode()
        topic = f"{agent.topics.base}/cmd/config_update"
        return agent.control.handle(Incoming(topic, payload, len(payload), None, None))

    yield agent, key, path, command
    agent.stop()


def test_a_signed_patch_applies_once_and_protected_keys_are_refused(post, tmp_path, schemas):
    agent, key, path, command = post
    answer = command(sign({"linkage": {"cooldown_s": 42}}, key, version=3))
    assert answer["ok"], answer
    assert answer["result"]["applied"] == ["linkage"] and answer["result"]["version"] == 3
    assert agent.config.linkage.cooldown_s == 42 and "settings bundle v3" in path.read_text()

    before = path.read_bytes()
    same = command(sign({"linkage": {"cooldown_s": 7}}, key, version=3))
    assert same["error"]["code"] == "stale_version"
    protected = command(sign({"mqtt": {"host": "evil.example"}}, key, version=4))
    assert (
        protected["error"]["code"] == "protected_key"
        and "mqtt.host" in protected["error"]["message"]
    )
    forged = sign({"linkage": {"cooldown_s": 5}}, key, version=5)
    forged["header"]["patch"]["linkage"]["cooldown_s"] = 1
    assert command(forged)["error"]["code"] == "bad_signature"
    stranger, _ = county_key(tmp_path, "stranger")
    assert command(sign({"linkage": {"cooldown_s": 5}}, stranger, version=6))["error"]["code"] == (
        "unknown_key"
    )
    assert command({"header": {}})["error"]["code"] == "bad_bundle"
    assert path.read_bytes() == before and agent.config.linkage.cooldown_s == 42
    # A change that needs a restart is watched across restarts (config_watch.py).
    answer = command(sign({"health": {"interval_s": 120}}, key, version=10))
    assert answer["ok"] and answer["result"]["restart_required"] == ["health"], answer
    watch = json.loads((path.parent / "config-watch.json").read_text())
    assert watch["version"] == 10 and watch["starts"] == 0
    body = {"id": "c1", "issued_ms": 1, "expires_ms": 2}
    schemas.check_command("config_update", {**body, "args": {"bundle": sign({}, key, 9)}})


def test_cli_signs_a_patch(tmp_path, capsys):
    key, _ = county_key(tmp_path)
    patch = tmp_path / "patch.yaml"
    patch.write_text("linkage:\n  cooldown_s: 30\n")
    out = tmp_path / "settings.json"
    code = main(["config", "bundle", "--patch", str(patch), "--key", str(tmp_path / "county.key"),
                 "--version", "2", "--out", str(out)])  # fmt: skip
    assert code == 0, capsys.readouterr()
    doc = json.loads(out.read_text())
    assert doc["header"]["patch"] == {"linkage": {"cooldown_s": 30}} and doc["kid"] == key.kid


def test_a_settings_bundle_that_crash_loops_is_undone_at_start(tmp_path):
    config, prev = tmp_path / "shaobing.yaml", tmp_path / "shaobing.yaml.prev"
    prev.write_text("# the settings before the bundle\n")
    config.write_text("# settings bundle v4\n")
    watch = ConfigWatch(tmp_path)
    watch.begin(4, watch_s=600, max_starts=2)
    assert [watch.on_start(config) for _ in range(2)] == [False, False]
    assert watch.on_start(config)  # the third start within the window: undone
    assert config.read_text() == prev.read_text()
    assert (tmp_path / "shaobing.yaml.failed").read_text() == "# settings bundle v4\n"
    report = watch.take_report()
    assert report["verdict"] == "crash_loop" and report["version"] == 4
    assert watch.take_report() is None and not watch.on_start(config)


def test_the_config_watch_ends_with_its_window(tmp_path):
    config = tmp_path / "shaobing.yaml"
    config.write_text("new\n")
    (tmp_path / "shaobing.yaml.prev").write_text("old\n")
    clock = [1000.0]
    watch = ConfigWatch(tmp_path, now=lambda: clock[0])
    watch.begin(2, watch_s=60, max_starts=1)
    assert not watch.on_start(config)  # the first start on the new file: its window begins
    clock[0] += 61
    assert not watch.on_start(config) and not watch.on_start(config)
    assert config.read_text() == "new\n"
