"""The agent buffers while the broker is away and delivers everything, in order, when it returns."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import yaml
from agent_harness import SimulatedPost
from conftest import EXAMPLE, config_for, wait_for
from county_key import local_test_config

from shaobing.simulator.broker import Mosquitto


def test_starts_with_broker_down_then_delivers_everything(tmp_path, county_factory, schemas):
    broker = Mosquitto().start()
    county = county_factory(broker.port)  # the platform's session outlives the outage
    broker.stop()  # the agent starts while the broker is down
    post = SimulatedPost(config_for(tmp_path, broker.port))
    try:
        for _ in range(3):
            post.wiring.press("panic-1", hold_s=0.1)
        post.wiring.trigger("pir-1")
        depth = post.agent.outbox.depth()
        assert depth["alarm"] == 7, depth  # 3 presses + 3 restores + 1 PIR
        broker.start()
        wait_for(lambda: sum(post.agent.outbox.depth().values()) == 0, 15)
        assert county.wait_for(lambda m: len(county.events("alarm")) == 7, 5)
    finally:
        post.stop()
        broker.close()
    alarms = county.events("alarm")
    seqs = [e["seq"] for e in alarms]
    assert seqs == sorted(seqs), "alarms must arrive in seq order"
    for message in county.messages:
        schemas.check(message.topic, message.payload)


def test_broker_restart_mid_run_loses_nothing(tmp_path, mosquitto, county_factory):
    county = county_factory(mosquitto.port, client_id="county-a")
    post = SimulatedPost(config_for(tmp_path, mosquitto.port))
    try:
        post.wiring.press("panic-1", hold_s=0.1)
        assert county.wait_for(lambda m: len(county.events("alarm")) == 2, 5)
        mosquitto.stop()
        wait_for(lambda: not post.agent.uplink.connected.is_set(), 10)
        post.wiring.press("panic-1", hold_s=0.1)
        post.wiring.press("pir-1", hold_s=0.3)
        assert post.agent.outbox.depth()["alarm"] == 4
        mosquitto.start()
        wait_for(lambda: sum(post.agent.outbox.depth().values()) == 0, 20)
        assert county.wait_for(lambda m: len({e["id"] for e in county.events("alarm")}) == 6, 10)
    finally:
        post.stop()
    alarm_seqs = [e["seq"] for e in county.events("alarm") if not e.get("replayed")]
    assert alarm_seqs == sorted(alarm_seqs)


def _count_rows(db, event_type: str = "%") -> int:
    import sqlite3

    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return conn.execute(
                "SELECT count(*) FROM outbox WHERE kind = 'event' AND event_type LIKE ?",
                (event_type,),
            ).fetchone()[0]
    except sqlite3.Error:
        return 0


def test_killed_agent_leaves_offline_will_and_replays_after_restart(
    tmp_path, mosquitto, county_factory, schemas
):
    """A real `shaobing run` process, SIGKILLed twice; health events are its event source."""
    data = yaml.safe_load(EXAMPLE.read_text())
    local_test_config(data, tmp_path)
    data["mqtt"].update({"port": mosquitto.port, "reconnect_max_s": 1})
    data["storage"]["path"] = str(tmp_path / "outbox.db")
    data["gpio"]["backend"] = "mock"
    data["gpio"]["allow_mock"] = True
    data["health"]["interval_s"] = 1
    cfg = tmp_path / "post.yaml"
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True))

    def start():
        return subprocess.Popen(
            [sys.executable, "-m", "shaobing.cli.main", "run", "--config", str(cfg)],
            stderr=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )

    def states(county):
        return [m.json()["state"] for m in county.messages if m.topic.endswith("/state")]

    county = county_factory(mosquitto.port)
    proc = start()
    try:
        assert county.wait_for(lambda m: "online" in states(county), 15)
        os.kill(proc.pid, signal.SIGKILL)  # power cut with the link up
        proc.wait(5)
        assert county.wait_for(lambda m: "offline" in states(county), 5), states(county)

        mosquitto.stop()  # 4G down: run 2 can only buffer
        proc = start()
        # health is batched for up to 1 s before its commit: wait until two are on disk
        wait_for(lambda: _count_rows(tmp_path / "outbox.db", "status.health") >= 2, 15)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
        buffered = _count_rows(tmp_path / "outbox.db")

        mosquitto.start()
        mark = len(county.messages)
        proc = start()
        assert county.wait_for(
            lambda m: len([e for e in county.events() if e.get("replayed")]) >= buffered, 15
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    # With no wiring on the mock pins the NC loops read open: run 2 also
    # buffered alarm.intrusion/alarm.tamper at start, replayed here too.
    # Rows of run 1 not yet deleted when it was killed (acks commit in batches) replay too.
    events = county.events()
    replayed = [e for e in events if e.get("replayed")]
    assert len(replayed) == buffered
    assert {e["data"]["run"] for e in replayed if e["type"] == "status.health"} <= {1, 2}
    run3 = [m.json() for m in county.messages[mark:] if "/event/" in m.topic]
    live = [e for e in run3 if not e.get("replayed")]
    assert live and all(e["data"]["run"] == 3 for e in live if e["type"] == "status.health")
    by_seq: dict[int, str] = {}
    for e in events:  # a duplicate (same id) is allowed; a seq reused for another id is not
        assert by_seq.setdefault(e["seq"], e["id"]) == e["id"], f"seq {e['seq']} reused"
    assert max(e["seq"] for e in replayed) < min(e["seq"] for e in live)
    for message in county.messages:
        schemas.check(message.topic, message.payload)
