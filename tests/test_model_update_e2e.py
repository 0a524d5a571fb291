"""A signed bundle over MQTT to a real `shaobing run` (issue 17): chunks across a broker
restart and a SIGKILL, a refused bundle leaving the running model at work."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import yaml
from bundle_support import announce, coco_bundle, county_key, missing, rewrite, send_chunks
from conftest import EXAMPLE, wait_for
from county_key import local_test_config
from platform_client import Platform

from shaobing.agent.detection.model_store import ModelStore

pytestmark = pytest.mark.timeout(240)


def _post_config(tmp_path, port, public) -> object:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["mqtt"].update({"port": port, "reconnect_max_s": 1})
    data["storage"]["path"] = str(tmp_path / "data" / "outbox.db")
    data["gpio"].update({"backend": "mock", "allow_mock": True})
    local_test_config(data, tmp_path)  # loopback broker without TLS
    # One county key signs the commands and the bundles (core/signing.py).
    data["control"]["command_keys"] = [str(public)]
    data["cameras"] = [
        {
            "id": "cam-crossing",
            "source": "sim:person-crossing?fps=4",
            "zones": [{"id": "crossing", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]]}],
        }
    ]
    data["detector"] = {"stats_interval_s": 1}
    data["health"]["interval_s"] = 2
    path = tmp_path / "post.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def _detection(county, since: int = 0) -> list[dict]:
    return [e["data"] for e in county.events("status.detection")][since:]


def _updates(county) -> list[dict]:
    return [e["data"] for e in county.events("status.update")]


def test_bundle_in_chunks_across_broker_restart_and_sigkill(
    tmp_path, mosquitto, county_factory, schemas
):
    key, public = county_key(tmp_path)
    cfg = _post_config(tmp_path, mosquitto.port, public)
    store = ModelStore(tmp_path / "data" / "models")
    good = coco_bundle(tmp_path, key, version=5)
    raw = good.read_bytes()
    forged = rewrite(good, tmp_path / "forged.bundle")  # same bytes, then one header byte off
    forged.write_bytes(raw.replace(b'"version": 5', b'"version": 6', 1))

    log = (tmp_path / "agent.log").open("ab")

    def start():
        return subprocess.Popen(
            [sys.executable, "-m", "shaobing.cli.main", "run", "--config", str(cfg)],
            stderr=log,
            stdout=subprocess.DEVNULL,
        )

    county = county_factory(mosquitto.port)
    proc = start()
    platform = None
    try:
        assert county.wait_for(lambda m: len(_detection(county)) >= 2, 60), "no detection stats"
        blaze = _detection(county)[-1]["model"]
        platform = Platform(
            mosquitto.port, f"shaobing/v1/130521104201/{_device(cfg)}", _device(cfg), key=key
        )

        # 1. A forged bundle arrives whole, is refused, and the running model keeps detecting.
        answer = announce(platform, forged, "u-forged", key)
        send_chunks(platform, forged, "u-forged", missing(answer))
        assert county.wait_for(
            lambda m: any(u["phase"] == "refused" for u in _updates(county)), 60
        ), _updates(county)
        refused = next(u for u in _updates(county) if u["phase"] == "refused")
        assert refused["verdict"] == "bad_signature" and refused["update_id"] == "u-forged"
        seen = len(_detection(county))
        assert county.wait_for(lambda m: len(_detection(county)) >= seen + 2, 30)
        assert all(d["model"] == blaze for d in _detection(county))
        assert store.state()["active"] is None

        # 2. The good bundle: part, broker restart, more, SIGKILL, the rest.
        chunks = missing(announce(platform, good, "u-coco", key))
        assert len(chunks) == -(-len(raw) // (256 * 1024))
        send_chunks(platform, good, "u-coco", chunks[:5])
        assert county.wait_for(
            lambda m: any(
                u.get("received", 0) >= 3 for u in _updates(county) if u["update_id"] == "u-coco"
            ),
            30,
        )
        mosquitto.restart()
        left = wait_for(lambda: _announce_when_up(platform, good, key), 30, "re-announce")
        assert len(left) < len(chunks)
        send_chunks(platform, good, "u-coco", left[:4])
        wait_for(lambda: len(missing(announce(platform, good, "u-coco", key))) <= len(left) - 4, 30)
        os.kill(proc.pid, signal.SIGKILL)  # power cut mid-transfer
        proc.wait(10)
        proc = start()
        left2 = wait_for(lambda: _announce_when_up(platform, good, key), 60, "re-announce")
        assert 0 < len(left2) <= len(left) - 4  # what was on disk before the kill survived
        send_chunks(platform, good, "u-coco", left2)
        assert county.wait_for(
            lambda m: any(u["phase"] == "active" for u in _updates(county)), 90
        ), _updates(county)
        active = next(u for u in _updates(county) if u["phase"] == "active")
        assert active["model"]["sha256"].startswith("e4b118e5e453")
        assert active["model"]["bundle_version"] == 5 and active["check"]["frames"] >= 3
        seen = len(_detection(county))
        assert county.wait_for(
            lambda m: any(
                d["model"] == "model.tflite" and d["cameras"][0]["inferences"] > 0
                for d in _detection(county, seen)
            ),
            30,
        )
        assert store.state()["active"].startswith("5-e4b118e5e453")
        assert county.wait_for(
            lambda m: any(
                (e["data"]["versions"]["model"] or {}).get("bundle_version") == 5
                for e in county.events("status.health")
            ),
            30,
        )
        phases = [u["phase"] for u in _updates(county) if u["update_id"] == "u-coco"]
        assert phases[0] == "receiving" and phases[-3:] == ["verifying", "checking", "active"]
    finally:
        if platform is not None:
            platform.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
    for message in county.messages:
        if "/bundle/" not in message.topic:  # chunks are bundle bytes, not JSON
            schemas.check(message.topic, message.payload)
    for command, body, _ in platform.sent:
        schemas.check_command(command, body)


def _device(cfg) -> str:
    return yaml.safe_load(cfg.read_text())["device"]["id"]


def _announce_when_up(platform, bundle, key):
    try:
        return missing(announce(platform, bundle, "u-coco", key))
    except TimeoutError:
        return None
