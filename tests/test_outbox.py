"""The SQLite outbox on its own, and refusals by a real broker."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from agent_harness import SimulatedPost
from conftest import EXAMPLE, config_for

from shaobing.agent.config import load_config
from shaobing.agent.outbox import Budget, Outbox
from shaobing.agent.recorder import Recorder
from shaobing.core.clock import Clock
from shaobing.core.events import Priority, Source
from shaobing.simulator.broker import Mosquitto


def _recorder(path):
    outbox = Outbox(path)
    return outbox, Recorder(load_config(EXAMPLE), outbox, Clock(trust="never"))


def test_seq_survives_restart_and_rows_keep_their_class(tmp_path):
    outbox, rec = _recorder(tmp_path / "o.db")
    first = rec.emit("alarm.panic", Source(kind="gpio", id="p"), zone="crossing")
    rec.emit("status.health", Source(kind="agent", id="health"), attachment=None)
    rec.emit("alarm.intrusion", Source(kind="camera", id="c"), attachment=b"\xff\xd8jpeg")
    outbox.close()
    outbox, rec = _recorder(tmp_path / "o.db")
    later = rec.emit("fault.camera", Source(kind="camera", id="c"))
    assert (first.seq, later.seq) == (1, 4)
    assert outbox.run == 2
    outbox.flush()
    assert outbox.depth() == {"alarm": 2, "fault": 1, "status": 1, "snapshot": 1}
    rows = outbox.next_rows({}, 10)
    # most urgent class first, then by insertion; earlier runs are replays
    assert [r.priority.name for r in rows] == ["ALARM", "ALARM", "FAULT", "STATUS", "SNAPSHOT"]
    assert [r.replayed for r in rows] == [True, True, False, True, True]
    assert outbox.ack(rows[:2]) == 2
    outbox.flush()
    assert outbox.depth()["alarm"] == 0
    outbox.close()


def test_corrupt_database_is_set_aside_and_reported(tmp_path, mosquitto, county_factory):
    db = tmp_path / "outbox.db"
    db.write_bytes(b"SQLite format 3\x00" + b"\x13garbage" * 512)
    county = county_factory(mosquitto.port)
    post = SimulatedPost(config_for(tmp_path, mosquitto.port))
    try:
        assert county.wait_for(lambda m: len(county.events("fault.storage")) == 1, 5)
        post.wiring.trigger("panic-1")
        assert county.wait_for(lambda m: len(county.events("alarm.panic")) == 1, 5)
    finally:
        post.stop()
    fault = county.events("fault.storage")[0]
    kept = fault["data"]["kept_as"]
    assert kept.startswith(str(db) + ".corrupt-")
    assert (tmp_path / kept.rsplit("/", 1)[1]).read_bytes().endswith(b"garbage")
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_broker_refusal_keeps_event_in_outbox(tmp_path, county_factory):
    """Mosquitto answers PUBACK 0x87 (not authorised) for a denied topic: not a success."""
    acl = tmp_path / "acl"
    acl.write_text("topic read shaobing/#\n")  # anonymous clients may read, not write
    broker = Mosquitto(extra_conf=f"acl_file {acl}\n").start()
    try:
        post = SimulatedPost(config_for(tmp_path, broker.port))
        try:
            post.wiring.trigger("panic-1")
            deadline = time.monotonic() + 10
            while post.agent.uplink.stats.refused == 0 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert post.agent.uplink.stats.refused >= 1
            assert "authori" in (post.agent.uplink.stats.last_refusal or "").lower()
            assert post.agent.outbox.depth()["alarm"] == 1
            assert post.agent.uplink.stats.acked == 0
            # held back with a growing pause, not retried in a tight loop
            time.sleep(1.0)
            assert post.agent.uplink.stats.refused <= 8  # a tight loop would be thousands
        finally:
            post.stop()
    finally:
        broker.close()


def _stored(path):
    with sqlite3.connect(path) as conn:
        rows = dict(conn.execute("SELECT priority, count(*) FROM outbox GROUP BY priority"))
        size = conn.execute("SELECT coalesce(sum(length(payload)), 0) FROM outbox").fetchone()[0]
    return {p.name.lower(): rows.get(int(p), 0) for p in Priority}, size


def test_failed_insert_leaves_counters_matching_the_database(tmp_path):
    db = tmp_path / "o.db"
    outbox, rec = _recorder(db)
    rec.emit("alarm.panic", Source(kind="gpio", id="p"), zone="crossing")
    with sqlite3.connect(db) as conn:  # a real refusal from SQLite, as a full disk would give
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON outbox WHEN NEW.event_type = 'fault.camera'"
            " BEGIN SELECT RAISE(ABORT, 'refused by test'); END"
        )
    with pytest.raises(sqlite3.DatabaseError, match="refused by test"):
        rec.emit("fault.camera", Source(kind="camera", id="c"), attachment=b"\xff\xd8jpeg")
    rows, size = _stored(db)
    assert outbox.depth() == rows == {"alarm": 1, "fault": 0, "status": 0, "snapshot": 0}
    assert outbox.stored_bytes() == size
    rec.emit("alarm.panic", Source(kind="gpio", id="p"), zone="crossing")
    assert outbox.depth() == _stored(db)[0] and outbox.stored_bytes() == _stored(db)[1]
    outbox.close()


def test_row_budget_evicts_exactly_the_excess(tmp_path):
    db = tmp_path / "o.db"
    outbox = Outbox(db, Budget(max_rows=500))
    rec = Recorder(load_config(EXAMPLE), outbox, Clock(trust="never"))
    for _ in range(750):  # one commit each: the budget is checked 250 times over
        rec.emit("alarm.panic", Source(kind="gpio", id="p"), zone="crossing")
    assert outbox.dropped["alarm"] == 250
    assert outbox.depth()["alarm"] == 500
    kept = {r.seq for r in outbox.next_rows({}, 1000)}
    assert len(set(range(1, 751)) - kept) == 250
    outbox.close()


def test_byte_budget_evicts_oldest_only_until_within_budget(tmp_path):
    db = tmp_path / "o.db"
    outbox = Outbox(db, Budget(max_bytes=20_000), batch_delay_s=0.01, batch_max=7)
    rec = Recorder(load_config(EXAMPLE), outbox, Clock(trust="never"))
    sizes = {}
    for i in range(200):
        e = rec.emit("status.health", Source(kind="agent", id="h"), data={"pad": "x" * (i % 50)})
        sizes[e.seq] = len(e.model_dump_json().encode())
    outbox.flush()
    kept = {r.seq for r in outbox.next_rows({}, 1000)}
    evicted = sorted(set(sizes) - kept)
    assert evicted == list(range(1, len(evicted) + 1)), "oldest first"
    assert outbox.dropped["status"] == len(evicted) > 0
    stored = outbox.stored_bytes()
    assert stored == _stored(db)[1] <= 20_000
    # One row fewer evicted would have left the outbox over budget.
    assert stored + sizes[evicted[-1]] > 20_000
    outbox.close()


def test_seq_keeps_rising_after_a_corrupt_outbox_is_set_aside(tmp_path):
    db = tmp_path / "o.db"
    outbox, rec = _recorder(db)
    last = [rec.emit("alarm.panic", Source(kind="gpio", id="p"), zone="crossing") for _ in range(3)]
    outbox.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    db.write_bytes(b"SQLite format 3\x00" + b"\x13garbage" * 512)
    outbox, rec = _recorder(db)
    assert outbox.recovered_from is not None
    after = rec.emit("fault.storage", Source(kind="agent", id="outbox"))
    # Past every seq the lost file can have held: the lost rows are a gap, never reused.
    assert after.seq > last[-1].seq
    assert oct(outbox.seq_file.stat().st_mode & 0o777) == "0o600"
    outbox.close()
    # A healthy restart continues from the database, with no jump.
    outbox, rec = _recorder(db)
    assert rec.emit("status.health", Source(kind="agent", id="h")).seq == after.seq + 1
    outbox.close()


def test_an_alarm_commits_without_the_deletes_of_a_drain(tmp_path):
    """A live alarm's transaction holds its insert only: the deletes of the PUBACKs
    queued with it (a backlog draining) commit after it, so its fsync and the uplink's
    wake-up do not wait for them (the live-alarm latency of docs/benchmarks.md)."""
    outbox, rec = _recorder(tmp_path / "o.db")
    src = Source(kind="test", id="t")
    try:
        for _ in range(200):
            rec.emit("status.test", src)
        outbox.flush()
        rows = outbox.next_rows({}, 200)
        statements: list[str] = []
        outbox._db.set_trace_callback(lambda sql: statements.append(sql.split()[0].upper()))
        for chunk in range(10):
            outbox.ack(rows[chunk * 20 : (chunk + 1) * 20])
            rec.emit("alarm.intrusion", src, zone="crossing")  # returns once committed
        outbox.flush()
        with outbox._db_lock:
            outbox._db.set_trace_callback(None)
        transactions = " ".join(statements).split("COMMIT")
        assert not [t for t in transactions if "INSERT" in t and "DELETE" in t], transactions
        assert outbox.depth()["status"] == 0 and outbox.depth()["alarm"] == 10
    finally:
        outbox.close()
