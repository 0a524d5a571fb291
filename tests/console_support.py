"""A simulated post with its commissioning console on, for the console's tests."""

from __future__ import annotations

from pathlib import Path

import yaml
from agent_harness import SimulatedPost
from conftest import config_for
from detection_support import V1, need_shared

from shaobing.agent.config import Config
from shaobing.agent.config_commands import config_data
from shaobing.agent.console.auth import hash_pin
from shaobing.agent.detection.config import CameraConfig, DetectorConfig
from shaobing.simulator.broker import free_port

PIN = "246810"
_HASH = hash_pin(PIN)  # scrypt is slow on purpose: once per test session


def console_config(tmp_path: Path, broker_port: int) -> tuple[Config, Path]:
    """The example post, a camera watching the crossing with NO zones yet, console on."""
    need_shared()
    base = config_for(tmp_path, broker_port)
    config = base.model_copy(
        update={
            "cameras": [
                CameraConfig(id="cam-crossing", source="sim:person-crossing?fps=15", zones=[])
            ],
            "detector": DetectorConfig(model=str(V1)),
            "console": base.console.model_copy(
                update={
                    "enabled": True,
                    "listen": ["127.0.0.1"],
                    "port": free_port(),
                    "pin_hash": _HASH,
                    "frame_interval_s": 0.3,
                }
            ),
        }
    )
    path = tmp_path / "shaobing.yaml"
    path.write_text(yaml.safe_dump(config_data(config), allow_unicode=True), encoding="utf-8")
    path.chmod(0o600)
    return config, path


def start_post(tmp_path: Path, broker_port: int) -> tuple[SimulatedPost, str, Path]:
    config, path = console_config(tmp_path, broker_port)
    post = SimulatedPost(config, config_path=path)
    url = post.agent.console.urls[0].rstrip("/")
    return post, url, path
