"""Crash consistency of an ack-ing source (issue 11): a real `shaobing run` with a
Contact ID host on a `socket://` line, SIGKILLed at random moments within 0.5 s of
an ACK, restarted; the host resends what was not ACKed, as a real host does.

An independent MQTT subscriber must see every ACKed frame's event, each frame as
exactly one event id (duplicates carry the same id), and seq gaps exactly where
the starts after the kills said they skipped (``status.health`` ``seq_skipped``).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import yaml
from conftest import EXAMPLE
from county_key import local_test_config

from shaobing.drivers.contact_id import format_raw
from shaobing.simulator.alarm_host import SimulatedAlarmHost
from shaobing.simulator.county import County

SEED = int(os.environ.get("SHAOBING_SEED", "11"))
# Every class of code, sent in turn: (qualifier, code) of alarm 1xx, fault 3xx,
# opening and closing 4xx, test report 602.
CLASSES = {
    "alarm": [("1", 130)],
    "fault": [("1", 301)],
    "arming": [("1", 401), ("3", 401)],
    "test": [("1", 602)],
}
MIX = [(name, q, code) for name, codes in CLASSES.items() for q, code in codes]
# Each kill comes 0-0.5 s after the ACK of a message of this class (messages of every
# class are on the line around each kill); the classes batched before the fix twice.
KILLS = ["alarm", "fault", "arming", "test", "arming", "test"]
# The host waits longer than the agent's ack_wait_s (0.8 s), so a late ACK is never
# taken for the next frame's.
HOST_ACK_WAIT_S = 2.5


def config_file(tmp_path, port: int, line_url: str) -> str:
    data = local_test_config(yaml.safe_load(EXAMPLE.read_text()), tmp_path)  # loopback broker
    data["mqtt"].update({"port": port, "reconnect_max_s": 1})
    data["storage"] = {"path": str(tmp_path / "outbox.db")}
    data["gpio"].update({"backend": "mock", "allow_mock": True})
    data["health"]["interval_s"] = 3600  # one at each start, with seq_skipped
    # No zone mapping: every message is recorded whatever the arm state.
    data["serial"] = {
        "buses": [{"id": "cid", "url": line_url, "timeout_s": 0.05}],
        "contact_id": [{"id": "host1", "bus": "cid"}],
    }
    path = tmp_path / "post.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return str(path)


@dataclass
class Run:
    """The agent processes of one test, started one after the other."""

    cfg: str
    log: object
    county: County
    proc: subprocess.Popen | None = None
    runs_seen: set[int] = field(default_factory=set)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "shaobing.cli.main", "run", "--config", self.cfg],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        # Ready once this run's first status.health is out: it carries what the
        # start skipped, and a kill after this point cannot lose that report.
        ok = self.county.wait_for(lambda _: self._new_run(), 60)
        assert ok, "agent did not come up"

    def _new_run(self) -> bool:
        runs = {e["data"]["run"] for e in self.county.events("status.health")}
        fresh = runs - self.runs_seen
        self.runs_seen |= runs
        return bool(fresh)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


def send_until_acked(host: SimulatedAlarmHost, frame: bytes, timeout: float = 60.0) -> None:
    """As a real host: resend an unACKed message until it is acknowledged."""
    deadline = time.monotonic() + timeout
    while not host.send_bytes(frame, attempts=1):
        assert time.monotonic() < deadline, f"{frame!r} never acknowledged"


def test_kill_near_acks_loses_nothing_acked_and_gaps_match_health(tmp_path, mosquitto, schemas):
    county = County("127.0.0.1", mosquitto.port)
    host = SimulatedAlarmHost(transport="socket", ack_timeout_s=HOST_ACK_WAIT_S, attempts=1)
    log = open(tmp_path / "agent.log", "wb")  # noqa: SIM115 (closed below)
    run = Run(config_file(tmp_path, mosquitto.port, host.url), log, county)
    acked: list[str] = []  # raw frames, in the order their ACK came
    current: str | None = None  # the message the host is sending until it is ACKed
    current_class = ""
    zone = 0
    try:
        rng = random.Random(SEED)
        for kill_class in KILLS:
            run.start()
            acks_to_go = rng.randint(1, 2)  # ACKs of kill_class before the kill is armed
            timer: threading.Timer | None = None
            while run.alive():
                if current is None:
                    zone += 1
                    name, q, code = MIX[zone % len(MIX)]
                    current = format_raw("1234", q, code, 1, zone)
                    current_class = name
                # One message at a time, resent until ACKed (also across the restart).
                if not host.send_bytes(current.encode() + b"\r", attempts=1):
                    continue
                acked.append(current)
                current = None
                if timer is None and current_class == kill_class:
                    acks_to_go -= 1
                    if acks_to_go == 0:
                        timer = threading.Timer(rng.uniform(0.0, 0.5), run.kill)
                        timer.start()
            if timer is not None:
                timer.join()
        # A last run: the host resends what it still holds, then everything drains.
        run.start()
        if current is not None:
            send_until_acked(host, current.encode() + b"\r")
            acked.append(current)

        def frames_seen() -> dict[str, set[str]]:
            ids: dict[str, set[str]] = {}
            for e in county.events():
                cid = e["data"].get("contact_id")
                if cid is not None:
                    ids.setdefault(cid["raw"], set()).add(e["id"])
            return ids

        def gaps_and_skipped() -> tuple[set[int], set[int]]:
            events = county.events()
            seqs = {e["seq"] for e in events}
            gaps = set(range(1, max(seqs) + 1)) - seqs
            skipped: set[int] = set()
            for e in county.events("status.health"):
                for s in e["data"]["seq_skipped"]:
                    skipped |= set(range(s["from"], s["to"] + 1))
            return gaps, skipped

        def delivered(_) -> bool:
            gaps, skipped = gaps_and_skipped()
            return set(acked) <= frames_seen().keys() and gaps <= skipped

        county.wait_for(delivered, 60)
    finally:
        run.stop()
        log.close()
        host.close()
        county.close()
    for m in county.messages:
        schemas.check(m.topic, m.payload)
    runs = {s["run"] for e in county.events("status.health") for s in e["data"]["seq_skipped"]}
    assert len(runs) == len(KILLS), runs  # each start after a kill
    seen = frames_seen()
    lost = [raw for raw in acked if raw not in seen]
    agent_log = (tmp_path / "agent.log").read_text(errors="replace")[-1500:]
    assert not lost, f"{len(lost)} of {len(acked)} ACKed frames lost: {lost[:8]}\n{agent_log}"
    twice = {raw: ids for raw, ids in seen.items() if len(ids) > 1}
    assert not twice, f"a frame became two events (new id on a resend): {twice}"
    gaps, skipped = gaps_and_skipped()
    seqs = {e["seq"] for e in county.events()}
    assert gaps == skipped & set(range(1, max(seqs) + 1)), (sorted(gaps), sorted(skipped))
    assert not seqs & skipped, "a seq reported skipped was given to an event"
    assert len(run.runs_seen) == len(KILLS) + 1
    assert {raw[7:10] for raw in acked} == {f"{code:03d}" for _n, _q, code in MIX}
    print(f"\n{len(run.runs_seen) - 1} kills, {len(acked)} frames ACKed, none lost")
