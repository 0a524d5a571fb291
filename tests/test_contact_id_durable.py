"""Contact ID over the real recorder and outbox: nothing ACKed before it is durable
(issue 11 item 1), the duplicate window survives a crash (item 12), and a start
after a crash skips the seqs lost events may have had (item 2)."""

from __future__ import annotations

import sqlite3
import threading

import pytest
from conftest import EXAMPLE

from shaobing.agent.config import load_config
from shaobing.agent.outbox import FRAMES_PER_SCOPE, Outbox
from shaobing.agent.recorder import Recorder
from shaobing.core.clock import Clock
from shaobing.core.events import Source
from shaobing.drivers.contact_id import ACK, ContactIdReceiver, format_raw
from shaobing.drivers.serial_config import ContactIdConfig

# One of each class of code: alarm 1xx, fault 3xx, opening/closing 4xx, test report 602.
CODES = [("1", 130), ("1", 301), ("1", 401), ("3", 401), ("1", 602)]


@pytest.fixture
def abandoned():
    """Outboxes a test "crashed" (left open): closed only once the test is over."""
    made: list[Outbox] = []
    yield made
    for outbox in made:
        outbox.close()


def open_outbox(path, **kw) -> tuple[Outbox, Recorder]:
    # Telemetry batches for an hour: only a durable commit can make these rows land.
    outbox = Outbox(path, batch_delay_s=kw.pop("batch_delay_s", 3600), **kw)
    return outbox, Recorder(load_config(EXAMPLE), outbox, Clock(trust="never"))


def receiver(recorder: Recorder, **kw) -> ContactIdReceiver:
    return ContactIdReceiver(ContactIdConfig(id="host1", bus="b1", **kw), recorder)


def frame(qualifier: str, code: int, zone: int = 3) -> bytes:
    return format_raw("1234", qualifier, code, 1, zone).encode() + b"\r"


def committed(path) -> list[tuple[str, str, int]]:
    """(type, id, seq) of event rows, read by an independent connection."""
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT event_type, event_id, seq FROM outbox WHERE kind = 'event' ORDER BY seq"
        ).fetchall()
    return rows


@pytest.mark.parametrize(("qualifier", "code"), CODES)
def test_ack_only_after_the_event_is_committed(tmp_path, qualifier, code):
    outbox, rec = open_outbox(tmp_path / "outbox.db")
    try:
        rx = receiver(rec)
        assert rx.feed(frame(qualifier, code)) == ACK
        # At the moment of the ACK the row is on disk: a SIGKILL now loses nothing.
        rows = committed(tmp_path / "outbox.db")
        assert [r[0].split(".")[0] for r in rows] == [
            {1: "alarm", 3: "fault", 4: "status", 6: "status"}[code // 100]
        ]
    finally:
        outbox.close()


def test_resend_after_a_crash_is_re_acked_without_a_second_event(tmp_path, abandoned):
    path = tmp_path / "outbox.db"
    for qualifier, code in CODES:
        outbox, rec = open_outbox(path)
        abandoned.append(outbox)
        rx = receiver(rec)
        assert rx.feed(frame(qualifier, code)) == ACK  # the ACK is "lost on the line"
        before = committed(path)
        # A crash: this outbox is abandoned, never closed; the next run opens the file.
        outbox2, rec2 = open_outbox(path)
        try:
            rx2 = receiver(rec2)
            assert rx2.feed(frame(qualifier, code)) == ACK
            assert rx2.stats.duplicates == 1
            assert committed(path) == before, "the resend became a second event"
            # A different frame is a new event as usual.
            assert rx2.feed(frame("1", 131, zone=9)) == ACK
            assert len(committed(path)) == len(before) + 1
        finally:
            outbox2.close()


def test_frame_window_is_bounded_and_old_frames_do_not_match(tmp_path):
    path = tmp_path / "outbox.db"
    outbox, rec = open_outbox(path)
    rx = receiver(rec)
    for zone in range(FRAMES_PER_SCOPE + 5):
        assert rx.feed(frame("1", 130, zone)) == ACK
    marks = rec.recent_frames(rx.scope)
    assert len(marks) == FRAMES_PER_SCOPE
    assert marks[-1].frame == format_raw("1234", "1", 130, 1, FRAMES_PER_SCOPE + 4)
    outbox.close()
    # A frame committed longer ago than restart_window_s is a new occurrence.
    outbox, rec = open_outbox(path)
    try:
        rx = receiver(rec, restart_window_s=0)
        assert rx.feed(frame("1", 130, FRAMES_PER_SCOPE + 4)) == ACK
        assert rx.stats.duplicates == 0
    finally:
        outbox.close()


def test_no_ack_until_durable_and_the_resend_waits_on_the_same_commit(tmp_path):
    path = tmp_path / "outbox.db"
    outbox, rec = open_outbox(path)
    try:
        rx = receiver(rec, ack_wait_s=0.2)
        assert rx.feed(frame("1", 602)) == ACK
        # The writer cannot commit while the database lock is held (a stalled SD card).
        outbox._db_lock.acquire()
        try:
            assert rx.feed(frame("1", 401)) == b"", "ACKed before the event was durable"
            assert rx.feed(frame("1", 401)) == b""  # the host's resend: still not durable
        finally:
            outbox._db_lock.release()
        assert rx.feed(frame("1", 401)) == ACK
        assert [r[0] for r in committed(path)] == ["status.heartbeat", "status.arming"]
        assert rx.stats.not_durable == 2
    finally:
        outbox.close()


def test_start_after_a_crash_skips_the_reserved_seqs_and_says_so(tmp_path, abandoned):
    path = tmp_path / "outbox.db"
    src = Source(kind="test", id="t")
    outbox, rec = open_outbox(path)
    abandoned.append(outbox)
    assert outbox.seq_skipped is None
    rec.emit("alarm.intrusion", src)  # committed: seq 1
    lost = [rec.emit("status.test", src).seq for _ in range(3)]  # batched, never committed
    assert lost == [2, 3, 4]
    # Crash: a new run opens the file while those three are still only in memory.
    outbox2, rec2 = open_outbox(path)
    try:
        lo, hi = outbox2.seq_skipped
        assert lo == 2 and hi >= 4, outbox2.seq_skipped
        assert rec2.emit("alarm.intrusion", src).seq == hi + 1  # never a seq a lost one had
    finally:
        outbox2.close()
    # A clean stop lowers the mark: the next start skips nothing and seq goes on by one.
    outbox3, rec3 = open_outbox(path)
    try:
        assert outbox3.seq_skipped is None
        assert rec3.emit("alarm.intrusion", src).seq == hi + 2
    finally:
        outbox3.close()


def test_concurrent_frames_from_two_hosts_each_ack_after_their_commit(tmp_path):
    path = tmp_path / "outbox.db"
    outbox, rec = open_outbox(path)
    try:
        hosts = [ContactIdReceiver(ContactIdConfig(id=f"h{i}", bus="b"), rec) for i in range(2)]
        acks: list[bytes] = []

        def run(rx: ContactIdReceiver) -> None:
            for zone in range(20):
                acks.append(rx.feed(frame("1", 602, zone)))

        threads = [threading.Thread(target=run, args=(rx,)) for rx in hosts]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert acks == [ACK] * 40
        assert len(committed(path)) == 40
    finally:
        outbox.close()


def test_a_run_that_dies_before_reporting_is_covered_by_the_next(tmp_path, abandoned):
    path = tmp_path / "outbox.db"
    src = Source(kind="test", id="t")
    skips = []
    for _ in range(3):  # three runs in a row die with telemetry still in memory
        outbox, rec = open_outbox(path)
        abandoned.append(outbox)
        rec.emit("alarm.intrusion", src)
        rec.emit("status.test", src)
        skips = outbox.seq_skips
    # The last start lists the skips of both crashed starts before it, oldest first.
    assert [run for run, _a, _b in skips] == [2, 3]
    assert skips[-1][1:] == outbox.seq_skipped
    assert all(a <= b for _r, a, b in skips)


def test_an_alarm_not_yet_durable_is_still_latched_with_its_id(tmp_path, mosquitto):
    """Through the linkage layer: an alarm whose commit is late is not ACKed, but it
    is recorded, sounds and is latched under the id it will be committed with."""
    from agent_harness import SimulatedPost
    from linkage_helpers import linkage_config

    from shaobing.core.events import DeviceFrame, NotYetDurable

    post = SimulatedPost(linkage_config(tmp_path, mosquitto.port, cameras=[]))
    try:
        fence = Source(kind="contact_id", id="host1")
        raw = format_raw("1234", "1", 130, 1, 3)
        outbox = post.agent.outbox
        outbox._db_lock.acquire()  # a stalled SD card
        try:
            with pytest.raises(NotYetDurable) as late:
                post.agent.sink.emit(
                    "alarm.perimeter",
                    fence,
                    zone="crossing",
                    data={"state": "alarm"},
                    frame=DeviceFrame("contact_id:host1", raw, 0.2),
                )
        finally:
            outbox._db_lock.release()
        assert late.value.wait(30)
        assert late.value.event_id in [a["alarm_id"] for a in post.agent.sink.open_alarms()]
        assert late.value.event_id in [r[1] for r in committed(tmp_path / "outbox.db")]
    finally:
        post.stop()
