"""Fault injection for store and forward: SIGKILL, long outages, full budgets, clock sync.

Real Mosquitto, real agent processes; the subscriber is a plain paho client.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter

import yaml
from agent_harness import SimulatedPost
from conftest import EXAMPLE, config_for, wait_for
from county_key import local_test_config

from shaobing.core.clock import Clock
from shaobing.core.events import Source
from shaobing.simulator.broker import Mosquitto

SRC = Source(kind="test", id="burst")


def _config_file(tmp_path, port: int, **storage) -> str:
    data = yaml.safe_load(EXAMPLE.read_text())
    local_test_config(data, tmp_path)
    data["mqtt"].update({"port": port, "reconnect_max_s": 1})
    data["storage"] = {"path": str(tmp_path / "outbox.db"), **storage}
    data["gpio"]["backend"] = "mock"
    data["gpio"]["allow_mock"] = True
    data["health"]["interval_s"] = 3600
    path = tmp_path / "post.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return str(path)


def test_sigkill_during_bursts_loses_no_accepted_event(tmp_path, mosquitto, county_factory):
    county = county_factory(mosquitto.port)
    cfg = _config_file(tmp_path, mosquitto.port)
    loadgen = [sys.executable, "-m", "shaobing.simulator.loadgen", "--config", cfg]
    accepted: dict[str, int] = {}
    skipped: list[tuple[int, int]] = []  # seq ranges each start skipped (after a kill)
    rng = random.Random(int(os.environ.get("SHAOBING_SEED", "7")))
    kills = 6
    for _ in range(kills):
        proc = subprocess.Popen(
            [*loadgen, "--alarms", "4000", "--threads", "4"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        # Kill once the burst is under way, at a random point in it.
        first = proc.stdout.readline()
        if first.startswith(b"skipped"):
            skipped.append(tuple(map(int, first.split()[1:])))
            first = proc.stdout.readline()
        assert first.startswith(b"accepted"), first
        time.sleep(rng.uniform(0.05, 0.8))
        proc.send_signal(signal.SIGKILL)
        rest, _ = proc.communicate(timeout=10)
        for line in (first + rest).splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == b"accepted":  # a torn last line is skipped
                accepted[parts[2].decode()] = int(parts[1])
    # One more run with no load delivers whatever the killed runs left behind.
    drain = subprocess.run(
        [*loadgen, "--drain"],
        timeout=60,
        check=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    for line in drain.stdout.splitlines():
        if line.startswith(b"skipped"):
            skipped.append(tuple(map(int, line.split()[1:])))
    county.wait_for(lambda m: accepted.keys() <= {e["id"] for e in county.events("alarm")}, 30)
    received = county.events("alarm")
    ids = Counter(e["id"] for e in received)
    lost = accepted.keys() - ids.keys()
    duplicates = sum(n - 1 for n in ids.values())
    print(f"\n{kills} kills: {len(accepted)} accepted, {len(lost)} lost, {duplicates} duplicates")
    assert not lost, (len(lost), sorted(accepted[i] for i in lost)[:20], len(received))
    # Every seq the platform saw belongs to exactly one event, and its gaps are exactly
    # the ranges the starts after each kill reported skipped (seqs lost events may have had).
    by_seq = {}
    for e in county.events():
        assert by_seq.setdefault(e["seq"], e["id"]) == e["id"], f"seq {e['seq']} reused"
    assert len(skipped) == kills, skipped
    missing = set(range(1, max(by_seq) + 1)) - by_seq.keys()
    assert missing == {s for lo, hi in skipped for s in range(lo, hi + 1)} & missing
    assert all(by_seq.keys().isdisjoint(range(lo, hi + 1)) for lo, hi in skipped)
    assert all(by_seq[seq] == eid for eid, seq in accepted.items())


def test_long_outage_delivers_alarms_first_each_class_in_order(tmp_path, county_factory, schemas):
    broker = Mosquitto().start()
    county = county_factory(broker.port)
    broker.stop()  # down for the whole burst
    config = config_for(tmp_path, broker.port)
    post = SimulatedPost(config)
    try:
        for i in range(1500):
            post.agent.recorder.emit("status.telemetry", SRC, data={"i": i})
            if i % 5 == 0:
                post.agent.recorder.emit("alarm.perimeter", SRC, zone="crossing", data={"i": i})
            if i % 100 == 0:
                post.agent.recorder.emit("fault.sensor", SRC, data={"i": i})
        post.agent.outbox.flush()
        assert post.agent.outbox.depth()["alarm"] == 300
        broker.start()
        wait_for(lambda: sum(post.agent.outbox.depth().values()) == 0, 30)
        assert county.wait_for(lambda m: len(county.events()) >= 1816, 30), (
            len(county.events()),
            county.client.is_connected(),
            broker.log()[-1500:],
        )
    finally:
        post.stop()
        broker.close()
    events = county.events()
    classes = [e["type"].split(".")[0] for e in events]
    last_alarm = max(i for i, c in enumerate(classes) if c == "alarm")
    first_status = min(i for i, c in enumerate(classes) if c == "status")
    assert last_alarm < first_status, "the alarm backlog goes out before telemetry"
    for cls in ("alarm", "fault", "status"):
        seqs = [e["seq"] for e in events if e["type"].startswith(cls)]
        assert seqs == sorted(seqs), f"{cls} out of seq order"
    for message in county.messages[:50] + county.messages[-50:]:
        schemas.check(message.topic, message.payload)


def test_full_budget_evicts_low_classes_and_counts_exactly(tmp_path, county_factory):
    broker = Mosquitto().start()
    county = county_factory(broker.port)
    broker.stop()
    config = config_for(tmp_path, broker.port)
    config = config.model_copy(
        update={"storage": config.storage.model_copy(update={"max_rows": 300, "max_bytes": None})}
    )
    post = SimulatedPost(config)
    rec = post.agent.recorder
    try:
        for i in range(600):
            rec.emit("status.telemetry", SRC, data={"i": i})
            if i % 6 == 0:
                rec.emit("alarm.perimeter", SRC, zone="crossing", attachment=b"\xff\xd8snap")
            if i % 60 == 0:
                rec.emit("fault.sensor", SRC, data={"i": i})
        post.agent.outbox.flush()
        dropped = dict(post.agent.outbox.dropped)
        assert dropped["alarm"] == 0 and dropped["fault"] == 0
        assert dropped["status"] > 0 and dropped["snapshot"] == 100
        broker.start()
        wait_for(lambda: sum(post.agent.outbox.depth().values()) == 0, 30)
        assert county.wait_for(lambda m: len(county.events("alarm")) == 100, 10)
        post.agent.health.report()
        # (the start-up health report was the oldest status row: evicted)
        assert county.wait_for(
            lambda m: any(e["data"]["dropped"]["status"] for e in county.events("status.health")),
            10,
        )
    finally:
        post.stop()
        broker.close()
    events = [e for e in county.events() if e["type"] != "status.health"]
    seen = {e["seq"] for e in county.events()}
    top = max(seen)
    missing = set(range(1, top + 1)) - seen
    assert len(missing) == dropped["status"], "every gap is a counted eviction"
    assert len([e for e in events if e["type"] == "alarm.perimeter"]) == 100
    snapshots = [m for m in county.messages if "/snapshot/" in m.topic]
    assert len(snapshots) == 0
    health = county.events("status.health")[-1]["data"]
    assert health["dropped"] == dropped


def test_refusal_is_visible_in_health_and_logs(tmp_path, county_factory, caplog):
    acl = tmp_path / "acl"
    acl.write_text("topic read shaobing/#\n")
    broker = Mosquitto(extra_conf=f"acl_file {acl}\n").start()
    caplog.set_level(logging.WARNING, logger="shaobing.uplink")
    post = SimulatedPost(config_for(tmp_path, broker.port))
    try:
        post.wiring.trigger("panic-1")
        wait_for(lambda: post.agent.uplink.stats.refused >= 1, 10)
        snap = post.agent.health.snapshot()
    finally:
        post.stop()
        broker.close()
    assert snap["uplink"]["refused"] >= 1 and "authori" in snap["uplink"]["last_refusal"].lower()
    assert snap["outbox"]["alarm"] == 1
    assert any("refused" in r.getMessage() for r in caplog.records)


def test_clock_sync_anchor_corrects_earlier_events(tmp_path, mosquitto, county_factory, schemas):
    synced = {"now": False}
    county = county_factory(mosquitto.port)
    post = SimulatedPost(config_for(tmp_path, mosquitto.port))
    agent = post.agent
    # The real Clock with its NTP probe replaced: the only thing a test cannot do is sync NTP.
    clock = Clock(recheck_s=0, probe=lambda: synced["now"])
    clock.on_sync(agent._clock_synchronised)
    agent.clock = agent.recorder._clock = clock
    agent.uplink._correct_ts = clock.corrected_ts
    try:
        mosquitto.stop()
        early = agent.recorder.emit("alarm.perimeter", SRC, zone="crossing")
        assert early.clock_trusted is False
        synced["now"] = True
        late = agent.recorder.emit("alarm.perimeter", SRC, zone="crossing")
        assert late.clock_trusted is True
        mosquitto.start()
        assert county.wait_for(lambda m: len(county.events("status.clock_sync")) == 1, 15)
        assert county.wait_for(lambda m: len(county.events("alarm.perimeter")) == 2, 15)
    finally:
        post.stop()
    anchor = county.events("status.clock_sync")[0]["data"]
    got_early = next(e for e in county.events("alarm.perimeter") if e["id"] == early.id)
    expected = anchor["ts"] - (anchor["mono_ns"] - early.mono_ns) // 1_000_000
    assert got_early["ts_corrected"] == expected
    assert abs(got_early["ts_corrected"] - early.ts) < 1000  # this test's clock was right
    got_late = next(e for e in county.events("alarm.perimeter") if e["id"] == late.id)
    assert "ts_corrected" not in got_late
    for message in county.messages:
        schemas.check(message.topic, message.payload)
