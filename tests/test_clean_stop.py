"""A clean stop leaves the retained state `stopped`, not the broker's will (`offline`).

A real `shaobing run` process is stopped by SIGTERM or SIGINT; after it has
exited, a late subscriber reads the retained state, as a platform that starts
afterwards would.
"""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
import yaml
from conftest import EXAMPLE
from county_key import local_test_config

from shaobing.simulator.county import County


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_retained_state_after_a_clean_stop_is_stopped(tmp_path, mosquitto, protocol, sig):
    data = yaml.safe_load(EXAMPLE.read_text())
    local_test_config(data, tmp_path)
    data["mqtt"].update({"port": mosquitto.port, "protocol": protocol})
    data["storage"]["path"] = str(tmp_path / "outbox.db")
    data["gpio"]["backend"] = "mock"
    data["gpio"]["allow_mock"] = True
    cfg = tmp_path / "post.yaml"
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True))
    live = County("127.0.0.1", mosquitto.port, topic="shaobing/+/+/+/state")
    proc = subprocess.Popen(
        [sys.executable, "-m", "shaobing.cli.main", "run", "--config", str(cfg)],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "agent.log", "wb"),  # noqa: SIM115 (closed with the process)
    )
    try:
        assert live.wait_for(lambda m: any(x.json()["state"] == "online" for x in m), 30), (
            tmp_path / "agent.log"
        ).read_text()[-2000:]
        proc.send_signal(sig)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        live.close()
    # Anything the broker does on the dropped connection (the will) has happened
    # by the time a new client's subscription is served after the process exit.
    late = County("127.0.0.1", mosquitto.port, topic="shaobing/+/+/+/state")
    try:
        assert late.wait_for(lambda m: len(m) >= 1, 10), "no retained state"
        retained = [m.json()["state"] for m in late.messages if m.retain]
    finally:
        late.close()
    assert retained == ["stopped"], (retained, mosquitto.log()[-800:])
