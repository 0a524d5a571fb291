"""`shaobing run` refuses the simulated GPIO backend unless allowed, and reports it when allowed."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import EXAMPLE
from county_key import local_test_config
from linkage_helpers import wait_until

from shaobing.agent.status_file import status_path

CLI = [sys.executable, "-m", "shaobing.cli.main"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mock_config(tmp_path: Path, **gpio: object) -> Path:
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    local_test_config(data, tmp_path)
    data["mqtt"].update({"port": _free_port(), "reconnect_max_s": 1})
    data["storage"]["path"] = str(tmp_path / "outbox.db")
    data["gpio"].update({"backend": "mock", **gpio})
    data["health"]["interval_s"] = 1
    cfg = tmp_path / "post.yaml"
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return cfg


def test_run_refuses_mock_backend_with_one_line_and_ex_config(tmp_path):
    cfg = _mock_config(tmp_path)
    result = subprocess.run(
        [*CLI, "run", "--config", str(cfg)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 78, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "gpio.backend is 'mock'" in lines[0]
    assert "--allow-mock-gpio" in lines[0]
    assert not (tmp_path / "outbox.db").exists()  # nothing started, nothing published


def _health_warnings_of_running_agent(tmp_path: Path, cfg: Path, *flags: str) -> list[str]:
    agent = subprocess.Popen(
        [*CLI, "run", "--config", str(cfg), *flags],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        path = status_path(tmp_path)
        assert wait_until(lambda: path.exists() and '"warnings"' in path.read_text(), 60)
        return json.loads(path.read_text())["health"]["warnings"]
    finally:
        agent.kill()
        agent.wait(10)


def test_flag_allows_mock_and_health_reports_it(tmp_path):
    cfg = _mock_config(tmp_path)
    assert _health_warnings_of_running_agent(tmp_path, cfg, "--allow-mock-gpio") == [
        "gpio_mock",
        "mqtt_plaintext",
    ]


def test_config_allows_mock_and_health_reports_it(tmp_path):
    cfg = _mock_config(tmp_path, allow_mock=True)
    assert _health_warnings_of_running_agent(tmp_path, cfg) == ["gpio_mock", "mqtt_plaintext"]


def test_run_without_a_pin_factory_says_what_to_install_in_one_line(tmp_path):
    cfg = _mock_config(tmp_path)
    data = yaml.safe_load(cfg.read_text(encoding="utf-8"))
    data["gpio"]["backend"] = "auto"
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    env = {**os.environ, "GPIOZERO_PIN_FACTORY": "no-such-factory"}
    result = subprocess.run(
        [*CLI, "run", "--config", str(cfg)], capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 78, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "no usable GPIO library" in lines[0]
    assert "shaobing[pi]" in lines[0] and "lgpio" in lines[0]
    assert "Traceback" not in result.stderr
