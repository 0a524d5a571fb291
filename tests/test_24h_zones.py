"""24-hour zones stay armed whatever the platform sends (issue 12 item 3), end to end
through a real Mosquitto: ``set_config`` refuses every patch that would disarm one
(``protected_key``, the file untouched to the byte and mode) and ``disarm`` refuses
to name one (``zone_is_24h``)."""

from __future__ import annotations

import os
import stat

import pytest
import yaml
from agent_harness import SimulatedPost
from linkage_helpers import linkage_config
from platform_client import Platform

from shaobing.agent.config import load_config

ARMING = {
    "default_mode": "armed",
    "zones": [{"zone": "crossing", "mode": "armed"}, {"zone": "cabinet", "mode": "24h"}],
}
NIGHTLY = [{"start": "20:00", "end": "06:00"}]


@pytest.fixture
def post_and_platform(tmp_path, mosquitto):
    config = linkage_config(tmp_path, mosquitto.port, arming=ARMING)
    path = tmp_path / "shaobing.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_defaults=True)))
    path.chmod(0o600)
    post = SimulatedPost(load_config(path), config_path=path)
    platform = None
    try:
        assert post.agent.uplink.connected.wait(10)
        platform = Platform(mosquitto.port, post.agent.topics.base, config.device.id)
        yield post, platform, path
    finally:
        if platform is not None:
            platform.close()
        post.stop()


def _file(path) -> tuple[bytes, int, int]:
    st = os.stat(path)
    return path.read_bytes(), stat.S_IMODE(st.st_mode), st.st_ino


@pytest.mark.parametrize(
    ("patch", "path"),
    [
        (
            {"arming": {"zones": [ARMING["zones"][0], {"zone": "cabinet", "mode": "disarmed"}]}},
            "arming.zones.1.mode",
        ),
        (
            {"arming": {"zones": [{"zone": "cabinet", "mode": "schedule", "schedules": NIGHTLY}]}},
            "arming.zones.0.mode",
        ),
        ({"arming": {"zones": [ARMING["zones"][0]]}}, "arming.zones"),
        ({"arming": None}, "arming.zones"),
        ({"zones": [{"id": "crossing", "name": "东关道口"}]}, "zones"),
    ],
    ids=["mode-disarmed", "mode-schedule", "entry-removed", "arming-reset", "zone-removed"],
)
def test_set_config_cannot_disarm_a_24h_zone(post_and_platform, patch, path):
    post, platform, config_path = post_and_platform
    before = _file(config_path)
    response = platform.command("set_config", {"patch": patch})
    assert response["ok"] is False, response
    assert response["error"]["code"] == "protected_key"
    details = response["error"]["details"]
    assert [d["path"] for d in details] == [path]
    assert "cabinet" in details[0]["message"]
    assert path in response["error"]["message"]
    assert _file(config_path) == before  # bytes, mode and inode: not even rewritten
    assert not config_path.with_name(config_path.name + ".prev").exists()
    assert post.agent.arming.state("cabinet").state == "armed"
    assert post.agent.config.arming == load_config(config_path).arming


def test_disarm_still_refuses_a_24h_zone_and_other_arming_changes_apply(post_and_platform):
    post, platform, config_path = post_and_platform
    before = _file(config_path)
    response = platform.command("disarm", {"zones": ["cabinet", "crossing"]})
    assert response["ok"] is False and response["error"]["code"] == "zone_is_24h", response
    assert post.agent.arming.state("crossing").state == "armed"  # all-or-nothing
    everything = platform.command("disarm", {"zones": "all"})
    assert everything["ok"] is True, everything
    assert everything["result"]["zones"]["cabinet"]["changed"] is False
    assert post.agent.arming.state("cabinet").state == "armed"
    assert _file(config_path) == before

    # Changing the other zone's arming by config is still the platform's to do.
    zones = [{"zone": "crossing", "mode": "disarmed"}, ARMING["zones"][1]]
    response = platform.command("set_config", {"patch": {"arming": {"zones": zones}}})
    assert response["ok"] is True, response
    assert response["result"]["applied"] == ["arming"]
    assert post.agent.arming.state("crossing").state == "disarmed"
    assert post.agent.arming.state("cabinet").state == "armed"
    assert stat.S_IMODE(config_path.stat().st_mode) == 0o600
