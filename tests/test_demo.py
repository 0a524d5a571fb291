"""`make demo` is a newcomer's first command: it must keep working, with either broker."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

DEMO = [sys.executable, "-m", "shaobing.agent.cli", "demo", "--duration", "5"]


@pytest.mark.parametrize("broker", ["mosquitto", "embedded"])
def test_demo_delivers_everything(broker):
    extra = ["--embedded-broker"] if broker == "embedded" else []
    run = subprocess.run([*DEMO, *extra], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    out = run.stdout
    assert ("MQTT 3.1.1" if broker == "embedded" else "MQTT 5") in out
    assert re.search(r"\[county\] event .* alarm\.(intrusion|panic) .*zone=crossing", out), out
    summary = re.search(
        r"summary: (\d+) .* (\d+) received by the county subscriber, (\d+) still", out
    )
    assert summary, out
    acked, received, waiting = map(int, summary.groups())
    assert acked == received > 0 and waiting == 0, out


def test_demo_rejects_a_bad_broker_address():
    run = subprocess.run(
        [*DEMO, "--broker", "localhost"], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 2
    assert "--broker 'localhost': expected HOST:PORT" in run.stderr
