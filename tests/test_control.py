"""Platform commands end to end through a real Mosquitto, MQTT 5 and the 3.1.1 fallback."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml
from agent_harness import SimulatedPost
from county_key import COUNTY
from fake_camera import FakeCamera
from linkage_helpers import linkage_config, wait_until
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from platform_client import Platform

from shaobing.agent.config import load_config
from shaobing.agent.runtime import Agent

KEY = b"county-shared-secret-0123456789"


@pytest.fixture
def rig(tmp_path, mosquitto, county_factory):
    """Start a post (config written to a real file) and a platform client; stop both after."""
    made: list = []

    def start(protocol="5", control=None, camera=True, scenes=None, **kw):
        config = linkage_config(
            tmp_path, mosquitto.port, protocol=protocol, control=control or {}, **kw
        )
        path = tmp_path / "shaobing.yaml"
        if not path.exists():
            path.write_text(
                yaml.safe_dump(config.model_dump(mode="json", exclude_defaults=True)),
                encoding="utf-8",
            )
        county = county_factory(mosquitto.port)
        verifier = FakeCamera(scenes or {"cam-1": "person"}) if camera else None
        post = SimulatedPost(load_config(path), verifier=verifier, config_path=path)
        assert post.agent.uplink.connected.wait(10)
        platform = Platform(
            mosquitto.port,
            post.agent.topics.base,
            config.device.id,
            protocol=mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311,
            key=KEY if (control or {}).get("key_env") else COUNTY,
        )
        made.append((post, platform))
        return post, platform, county, path

    yield start
    for post, platform in made:
        platform.close()
        post.stop()


def ok(response: dict) -> dict:
    assert response["ok"] is True, response
    return response["result"]


def error(response: dict) -> str:
    assert response["ok"] is False, response
    return response["error"]["code"]


def check_traffic(platform, county, schemas) -> None:
    for command, body, response in platform.sent:
        if response["ok"]:  # every accepted command is valid by the published schema
            schemas.check_command(command, body)
    for response, _corr, topic in platform.responses:
        schemas.check(topic, json.dumps(response).encode())
    for message in county.messages:
        schemas.check(message.topic, message.payload)


def test_ping_arm_disarm_and_arm_state_survives_restart(rig, schemas, tmp_path, mosquitto):
    post, platform, county, path = rig()
    pong = ok(platform.command("ping"))
    assert pong["pong"] is True and pong["device"] == post.agent.config.device.id

    result = ok(platform.command("disarm", {"zones": ["crossing"]}))
    assert result["zones"]["crossing"]["state"] == "disarmed"
    assert result["zones"]["crossing"]["changed"] is True
    assert county.wait_for(
        lambda m: any(
            e["data"]["by"] == "command" and e["data"]["state"] == "disarmed"
            for e in county.events("status.arming")
        ),
        5,
    )
    post.wiring.trigger("pir-1")  # disarmed now: suppressed
    all_zones = ok(platform.command("disarm", {"zones": "all"}))
    assert all_zones["zones"]["cabinet"]["state"] == "disarmed"
    assert error(platform.command("arm", {"zones": ["nowhere"]})) == "unknown_zone"
    post.stop()
    assert not [e for e in county.events("alarm.intrusion")]

    # A new agent on the same storage: the zone is still disarmed.
    again = SimulatedPost(load_config(path), config_path=path)
    try:
        assert again.agent.arming.state("crossing").state == "disarmed"
        assert again.agent.arming.state("crossing").why == "override"
    finally:
        again.stop()
    check_traffic(platform, county, schemas)


def test_siren_on_for_a_duration_and_off(rig, schemas):
    post, platform, county, _ = rig()
    result = ok(platform.command("siren", {"on": True, "duration_s": 0.5}))
    assert result["outputs"] == ["siren-1"]
    # the response is sent after the output is switched on
    assert post.wiring.output_on("siren-1") or wait_until(
        lambda: not post.wiring.output_on("siren-1"), 5
    )
    assert wait_until(lambda: not post.wiring.output_on("siren-1"), 5)
    ok(
        platform.command(
            "siren", {"on": True, "duration_s": 300, "outputs": ["siren-1", "strobe-1"]}
        )
    )
    assert post.wiring.output_on("siren-1") and post.wiring.output_on("strobe-1")
    ok(platform.command("siren", {"on": False, "outputs": ["siren-1", "strobe-1"]}))
    assert not post.wiring.output_on("siren-1") and not post.wiring.output_on("strobe-1")
    assert error(platform.command("siren", {"on": True})) == "bad_args"
    assert error(platform.command("siren", {"on": True, "duration_s": 5, "outputs": ["x"]})) == (
        "bad_args"
    )
    check_traffic(platform, county, schemas)


def test_snapshot_goes_through_the_outbox(rig, schemas):
    _post, platform, county, _ = rig()
    result = ok(platform.command("snapshot", {"camera": "cam-1"}))
    event_id = result["event_id"]
    assert county.wait_for(lambda m: any(x.topic.endswith(f"/snapshot/{event_id}") for x in m), 5)
    assert county.wait_for(lambda m: county.events("status.snapshot"), 5)
    assert county.events("status.snapshot")[0]["id"] == event_id
    assert error(platform.command("snapshot", {"camera": "cam-9"})) == "unknown_camera"
    check_traffic(platform, county, schemas)


def test_snapshot_of_a_camera_that_is_down_answers_camera_down(rig, schemas):
    # Issue 11 item 6: no pre-outage frame passed off as the scene now.
    _post, platform, county, _ = rig(scenes={"cam-1": "down"})
    response = platform.command("snapshot", {"camera": "cam-1"})
    assert error(response) == "camera_down"
    assert "camera cam-1 is down (for 42 s)" in response["error"]["message"]
    assert not county.events("status.snapshot")
    check_traffic(platform, county, schemas)


def test_snapshot_without_camera_pipeline_is_not_supported(rig):
    _post, platform, _county, _ = rig(camera=False)
    assert error(platform.command("snapshot", {"camera": "cam-1"})) == "not_supported"


def test_get_and_set_config_live_restart_invalid_and_rollback(rig, schemas):
    post, platform, county, path = rig()
    original = path.read_bytes()
    got = ok(platform.command("get_config", {"sections": ["device", "linkage"]}))
    assert got["config"]["device"]["id"] == post.agent.config.device.id
    assert set(got["config"]) == {"device", "linkage"}

    # Live: the cooldown changes at once, the file is rewritten and the old one kept.
    done = ok(platform.command("set_config", {"patch": {"linkage": {"cooldown_s": 5}}}))
    assert done == {
        "changed": ["linkage"],
        "applied": ["linkage"],
        "restart_required": [],
        "persisted": True,
    }
    assert post.agent.config.linkage.cooldown_s == 5 and post.agent.sink.config.cooldown_s == 5
    assert load_config(path).linkage.cooldown_s == 5
    assert path.with_name(path.name + ".prev").read_bytes() == original

    # Invalid: a precise, located error and nothing written.
    before = path.read_bytes()
    bad = platform.command(
        "set_config",
        {"patch": {"linkage": {"cooldown_s": -1, "rules": [{"zone": "nowhere"}]}}},
    )
    assert error(bad) == "invalid_config"
    paths = {d["path"] for d in bad["error"]["details"]}
    assert "linkage.cooldown_s" in paths
    assert path.read_bytes() == before and post.agent.config.linkage.cooldown_s == 5

    # Needs a restart: written, not applied, reported by get_config.
    later = ok(platform.command("set_config", {"patch": {"health": {"interval_s": 1800}}}))
    assert later["restart_required"] == ["health"] and later["applied"] == []
    assert post.agent.config.health.interval_s != 1800
    assert load_config(path).health.interval_s == 1800
    assert ok(platform.command("get_config"))["restart_required"] == ["health"]

    # Rollback: back to the file before the last set_config.
    ok(platform.command("set_config", {"rollback": True}))
    assert load_config(path).health.interval_s == post.agent.config.health.interval_s
    assert load_config(path).linkage.cooldown_s == 5
    check_traffic(platform, county, schemas)


def test_restart_answers_then_asks_the_agent_to_restart(rig, schemas):
    post, platform, county, _ = rig()
    assert ok(platform.command("restart")) == {"restarting": True}
    assert post.agent.restart_requested.wait(5)
    check_traffic(platform, county, schemas)


def test_mqtt_311_fallback_answers_on_cmd_response(rig, schemas):
    post, platform, county, _ = rig(protocol="3.1.1")
    response = platform.command("ping")
    assert ok(response)["pong"] is True
    assert platform.responses[-1][2] == f"{post.agent.topics.base}/cmd/response"
    assert ok(platform.command("arm", {"zones": ["crossing"]}))["zones"]["crossing"]
    assert error(platform.send("ping", b"{nope")) == "bad_json"
    check_traffic(platform, county, schemas)


def test_expired_future_replayed_and_badly_signed_are_rejected(rig, schemas, monkeypatch):
    monkeypatch.setenv("SHAOBING_TEST_KEY", KEY.decode())
    post, platform, county, path = rig(control={"key_env": "SHAOBING_TEST_KEY"})
    body = platform.body("disarm", {"zones": ["crossing"]})
    assert ok(platform.send("disarm", body))
    assert error(platform.send("disarm", body)) == "replayed"
    now = body["issued_ms"]
    state = post.agent.arming.state("crossing")
    cases = {
        "expired": platform.body("arm", {"zones": "all"}, issued_ms=now - 120_000, ttl_ms=60_000),
        "not_yet_valid": platform.body("arm", {"zones": "all"}, issued_ms=now + 3_600_000),
        "unsigned": platform.body("arm", {"zones": "all"}, signed=False),
        "bad_signature": platform.body("arm", {"zones": "all"}, key=b"wrong key"),
    }
    for code, case in cases.items():
        assert error(platform.send("arm", case)) == code, code
    # A signature for another command or another device does not transfer.
    assert (
        error(
            platform.send(
                "arm", platform.body("arm", {"zones": "all"}, sign_as=("ping", platform.device))
            )
        )
        == "bad_signature"
    )
    assert (
        error(
            platform.send(
                "arm", platform.body("arm", {"zones": "all"}, sign_as=("arm", "sb-other-01"))
            )
        )
        == "bad_signature"
    )
    tampered = platform.body("arm", {"zones": ["crossing"]})
    tampered["args"] = {"zones": "all"}
    assert error(platform.send("arm", tampered)) == "bad_signature"
    assert post.agent.arming.state("crossing") == state

    # The replay cache survives a restart.
    post.stop()
    again = Agent(load_config(path), config_path=path)
    try:
        response = again.control.handle(_incoming(again, "disarm", body))
        assert response["error"]["code"] == "replayed"
    finally:
        again.stop()
    check_traffic(platform, county, schemas)


def test_malformed_over_the_broker(rig, schemas):
    _post, platform, county, _ = rig()
    big = json.dumps({"id": "x1", "pad": "x" * 20000}).encode()
    assert error(platform.send("ping", big)) == "too_large"
    assert error(platform.send("ping", b"\xff\xfe")) == "bad_json"
    assert error(platform.send("ping", b"[1, 2]")) == "bad_json"
    for constant in (b"NaN", b"Infinity", b"-Infinity"):  # not JSON (RFC 8259), as docs say
        nan = b'{"id": "x3", "issued_ms": ' + constant + b', "expires_ms": 2}'
        assert error(platform.send("ping", nan)) == "bad_json"
    assert error(platform.command("launch")) == "unknown_command"
    assert error(platform.send("ping", {"id": "x2", "issued_ms": "now"})) == "bad_envelope"
    assert error(platform.command("arm", {"zones": 5})) == "bad_args"
    check_traffic(platform, county, schemas)


def test_response_topic_inside_the_device_tree_is_not_used(rig, schemas):
    """Otherwise a command could make the box publish a forged event."""
    post, platform, county, _ = rig()
    forged = f"{post.agent.topics.base}/event/alarm/panic"
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = forged
    props.CorrelationData = b"c-1"
    body = platform.body("ping")
    platform.client.publish(
        f"{post.agent.topics.base}/cmd/ping", json.dumps(body).encode(), qos=1, properties=props
    )
    response_topic = f"{post.agent.topics.base}/cmd/response"
    assert county.wait_for(lambda m: any(x.topic == response_topic for x in m), 5)
    assert not any(x.topic == forged for x in county.messages)
    check_traffic(platform, county, schemas)


def _incoming(agent, command: str, body: dict):
    from shaobing.agent.control import Incoming

    raw = json.dumps(body).encode()
    return Incoming(f"{agent.topics.base}/cmd/{command}", raw, len(raw), None, None)


def test_get_config_shows_no_password_nor_camera_credentials(rig, tmp_path, mosquitto):
    config = linkage_config(tmp_path, mosquitto.port, control={})
    data = config.model_dump(mode="json", exclude_defaults=True)
    data["mqtt"]["username"], data["mqtt"]["password"] = "post-17", "broker-pw-9"
    data["cameras"] = [
        {"id": "cam-9", "source": "rtsp://admin:p@ss/w0rd@10.0.0.9:554/live", "enabled": False}
    ]
    (tmp_path / "shaobing.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    _post, platform, _county, _ = rig()
    got = ok(platform.command("get_config"))["config"]
    text = json.dumps(got)
    assert "broker-pw-9" not in text and "w0rd" not in text and "p@ss" not in text, text
    assert got["cameras"][0]["source"] == "rtsp://***@10.0.0.9:554/live"
    assert got["mqtt"]["password"] == "***"


def test_files_stay_owner_only_whatever_the_umask(rig, tmp_path):
    """Config rewrites, outbox.db (+ -wal/-shm) and state files: 0600 even under umask 022."""
    old = os.umask(0o022)
    try:
        post, platform, _county, path = rig()
        path.chmod(0o600)
        ok(platform.command("set_config", {"patch": {"linkage": {"cooldown_s": 7}}}))
        ok(platform.command("disarm", {"zones": ["crossing"]}))  # arm state + replay cache
        storage = post.agent.config.storage.path
        files = [path, path.with_name(path.name + ".prev"), storage]
        files += [Path(f"{storage}{suffix}") for suffix in ("-wal", "-shm")]
        files += [p for p in storage.parent.glob("*.json") if p.is_file()]
        assert len(files) > 5, files
        modes = {str(f): oct(stat.S_IMODE(f.stat().st_mode)) for f in files}
        assert set(modes.values()) == {"0o600"}, modes
    finally:
        os.umask(old)


def test_set_config_refuses_protected_keys_and_leaves_the_file_untouched(rig, schemas):
    post, platform, county, path = rig()
    before = path.read_bytes()
    refused = [
        ({"mqtt": {"host": "evil.example"}}, ["mqtt.host"]),
        ({"mqtt": {"port": 1883, "password": "x"}}, ["mqtt.password", "mqtt.port"]),
        ({"control": {"insecure_unsigned": True}}, ["control.insecure_unsigned"]),
        ({"storage": {"path": "/tmp/elsewhere.db"}}, ["storage.path"]),
        ({"device": {"id": "post-other"}}, ["device.id"]),
        ({"site": None}, ["site"]),
        ({"linkage": {"cooldown_s": 601}}, ["linkage.cooldown_s"]),
        ({"linkage": {"suppressed": "drop"}}, ["linkage.suppressed"]),
        (
            {"health": {"interval_s": 60}, "mqtt": {"keepalive_s": 30}, "device": {"id": "x"}},
            ["device.id", "mqtt.keepalive_s"],
        ),
    ]
    for patch, keys in refused:
        response = platform.command("set_config", {"patch": patch})
        assert error(response) == "protected_key", (patch, response)
        assert sorted(d["path"] for d in response["error"]["details"]) == keys
        assert all(k in response["error"]["message"] for k in keys)
        assert path.read_bytes() == before
        assert not path.with_name(path.name + ".prev").exists()
    # At the cap is fine: the cap bounds alarm suppression, not tuning.
    ok(platform.command("set_config", {"patch": {"linkage": {"cooldown_s": 600}}}))
    assert post.agent.config.linkage.cooldown_s == 600
    check_traffic(platform, county, schemas)
