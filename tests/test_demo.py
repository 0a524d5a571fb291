"""`make demo` is a newcomer's first command: it must keep working, with either broker."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DEMO = [sys.executable, "-m", "shaobing.cli.main", "demo", "--duration", "5"]


@pytest.mark.parametrize("broker", ["mosquitto", "embedded"])
def test_demo_delivers_everything(broker, tmp_path):
    extra = ["--embedded-broker"] if broker == "embedded" else []
    extra += ["--snapshots", str(tmp_path / "snaps")]
    run = subprocess.run([*DEMO, *extra], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    out = run.stdout
    assert ("MQTT 3.1.1" if broker == "embedded" else "MQTT 5") in out
    # The commissioning console is up for the simulated post, with this run's PIN.
    assert re.search(r"^console: http://127\.0\.0\.1:\d+/  PIN: \d{6}$", out, re.M), out
    # Each alarm names the sensor that raised it, and its place.
    assert re.search(
        r"\[county\] seq=\d+ +alarm\.(intrusion|panic) +alarm from gpio:\S+ (pir|panic)"
        r" +zone crossing",
        out,
    ), out
    # County lines in seq order, with no gap.
    seqs = [int(n) for n in re.findall(r"^\[county\] seq=(\d+)", out, re.M)]
    assert seqs == list(range(1, len(seqs) + 1)), seqs
    # Health as words, not a Python dict.
    health = re.search(r"^\[county\] seq=\d+ +status\.health +(.*)$", out, re.M)
    assert health and "waiting to send:" in health.group(1) and "{" not in health.group(1), out
    # Snapshots are files a person can open, at the printed path.
    for path in re.findall(r"snapshot(?: of seq=\d+)?: (\S+\.jpg)", out):
        assert Path(path).read_bytes()[:2] == b"\xff\xd8"
        assert Path(path).parent == tmp_path / "snaps"
    # No library chatter (TFLite's native INFO lines) on either stream.
    assert "INFO:" not in out and "INFO:" not in run.stderr, run.stderr
    # The demo's temporary outbox is gone.
    workdir = Path(re.search(r"outbox: (\S+)", out).group(1)).parent
    assert not workdir.exists()
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
