"""Issue 11 item 3: every condition opened is closed exactly once, across restarts.

A zone alarm, a `fault.device_offline` and GPIO inputs that change while the
agent is down (SIGTERM or SIGKILL of a real process) get their restore or
`fault.cleared` after the restart, marked `found_at_start`; a condition still
open is not reported again; nothing is closed twice.
"""

from __future__ import annotations

import json
import os
import signal

import pytest
from agent_process import CRASHES, AgentProcess, post_config, write_config
from conftest import config_for, wait_for
from hypothesis import given
from hypothesis import strategies as st

from shaobing.agent.conditions import ConditionLedger, Key, change_of
from shaobing.agent.outbox import Outbox
from shaobing.agent.recorder import Recorder
from shaobing.core.clock import Clock
from shaobing.core.events import Source
from shaobing.simulator.modbus_device import Fault, SimulatedDetector, SimulatedModbusBus

GPIO = Source(kind="gpio", id="door-1")
FENCE_ZONES = [
    {"id": "fence-k261", "name": "K261 护网"},
    {"id": "fence-k262", "name": "K262 护网"},
]


def unique(events: list[dict], type: str) -> list[dict]:
    """Events of one type, each id once (a SIGKILL may make the outbox resend one)."""
    seen: dict[str, dict] = {}
    for e in events:
        if e["type"] == type:
            seen.setdefault(e["id"], e)
    return list(seen.values())


# ---- the rules, on a real outbox across runs ----------------------------------


def test_change_of_follows_the_event_model():
    assert change_of("alarm.intrusion", GPIO, "cabinet", {"state": "alarm"}).opens
    close = change_of("alarm.intrusion.restore", GPIO, "cabinet", {"state": "restore"})
    assert close == change_of("alarm.intrusion", GPIO, "cabinet", {}).__class__(
        Key("gpio", "door-1", "cabinet", "alarm.intrusion"), opens=False
    )
    bus = Source(kind="modbus", id="fence-1")
    cleared = change_of("fault.cleared", bus, "z", {"cleared": "fault.device_offline"})
    assert cleared.key.condition == "fault.device_offline" and not cleared.opens
    cam = Source(kind="camera", id="cam-1")
    assert change_of("fault.camera", cam, None, {"state": "down"}).opens
    assert not change_of("fault.camera", cam, None, {"state": "recovered"}).opens
    # Not conditions: camera tracks, "still present" reports, status events, the agent's own.
    assert change_of("alarm.intrusion", cam, "z", {"phase": "start", "track_id": 1}) is None
    assert change_of("alarm.perimeter", bus, "z", {"state": "status"}) is None
    assert change_of("status.arming", bus, "z", {}) is None
    assert change_of("fault.storage", Source(kind="agent", id="outbox"), None, {}) is None


def _recorder(tmp_path) -> tuple[Recorder, Outbox]:
    config = config_for(tmp_path, 1883)
    outbox = Outbox(tmp_path / "outbox.db")
    return Recorder(config, outbox, Clock()), outbox


def test_ledger_survives_a_restart_and_closes_once(tmp_path):
    recorder, outbox = _recorder(tmp_path)
    alarm = recorder.emit("alarm.intrusion", GPIO, zone="cabinet", data={"state": "alarm"})
    recorder.emit("fault.device_offline", Source(kind="modbus", id="m"), zone="cabinet")
    # An end of nothing open is not news.
    assert recorder.emit("alarm.tamper.restore", GPIO, zone="cabinet") is None
    outbox.close()

    recorder, outbox = _recorder(tmp_path)
    try:
        assert recorder.opened_before(GPIO, "cabinet", "alarm.intrusion")
        assert not recorder.opened_before(GPIO, "crossing", "alarm.intrusion")
        # Still open since the earlier run: not a new start.
        again = recorder.emit("fault.device_offline", Source(kind="modbus", id="m"), zone="cabinet")
        assert again is None
        restore = recorder.emit(
            "alarm.intrusion.restore", GPIO, zone="cabinet", data={"state": "restore"}
        )
        assert restore.data["found_at_start"] is True
        assert restore.data["opened_id"] == alarm.id
        assert recorder.emit("alarm.intrusion.restore", GPIO, zone="cabinet") is None
        # A new start in this run, then its end: not found at start.
        recorder.emit("alarm.intrusion", GPIO, zone="cabinet")
        end = recorder.emit("alarm.intrusion.restore", GPIO, zone="cabinet")
        assert "found_at_start" not in end.data
        assert [c.key.condition for c in outbox.open_conditions()] == ["fault.device_offline"]
    finally:
        outbox.close()


def test_ledger_rows_commit_with_their_event(tmp_path):
    """Same transaction: a failed commit leaves neither the event nor the condition."""
    recorder, outbox = _recorder(tmp_path)
    try:
        outbox._db.execute(
            "CREATE TRIGGER no_more BEFORE INSERT ON outbox BEGIN"
            " SELECT RAISE(ABORT, 'disk says no'); END"
        )
        with pytest.raises(Exception, match="disk says no"):
            recorder.emit("alarm.intrusion", GPIO, zone="cabinet")
        assert outbox.open_conditions() == []
        assert recorder.conditions.open() == []
    finally:
        outbox.close()


def test_ledger_memory_is_pure_until_applied():
    ledger = ConditionLedger([], run=1)
    first = ledger.admit("alarm.panic", GPIO, "z", {})
    assert first == ledger.admit("alarm.panic", GPIO, "z", {})
    assert not ledger.admit("alarm.panic.restore", GPIO, "z", {}).record


# ---- real processes: Modbus zone alarm and device_offline ------------------------


@pytest.fixture
def fence_bus():
    sim = SimulatedModbusBus(
        [SimulatedDetector(2, "pulse_fence_2"), SimulatedDetector(3, "pulse_fence_2")],
        transport="socket",
    )
    sim.start()
    yield sim
    sim.stop()


def _modbus_post(tmp_path, port: int, url: str) -> AgentProcess:
    detector = {
        "bus": "rs485-1",
        "profile": "pulse_fence_2",
        "poll_period_s": 0.1,
        "retries": 0,
        "offline_after_missed": 3,
    }
    data = post_config(
        tmp_path,
        port,
        serial={
            "buses": [{"id": "rs485-1", "url": url, "timeout_s": 0.2}],
            "modbus": [
                {
                    **detector,
                    "id": "fence-1",
                    "unit": 2,
                    "zones": [{"device_zone": 1, "zone": "fence-k261"}],
                },
                {
                    **detector,
                    "id": "fence-2",
                    "unit": 3,
                    "zones": [{"device_zone": 1, "zone": "fence-k262"}],
                },
            ],
        },
    )
    data["zones"] += FENCE_ZONES
    data["inputs"] = []  # only the serial devices here
    config = write_config(tmp_path / "post.yaml", data)
    return AgentProcess(config, tmp_path / "agent.log")


@pytest.mark.parametrize("crash", CRASHES, ids=lambda s: signal.Signals(s).name)
def test_modbus_conditions_that_end_while_down_are_closed_once(
    tmp_path, mosquitto, county_factory, schemas, fence_bus, crash
):
    sim = fence_bus
    county = county_factory(mosquitto.port)

    def got(type: str, n: int = 1) -> bool:
        return county.wait_for(lambda m: len(unique(county.events(), type)) >= n, 40)

    with _modbus_post(tmp_path, mosquitto.port, sim.url) as agent:
        agent.start()
        sim[2].set_zone_alarm(1, True)
        sim.inject(Fault.SILENT, unit=3)
        assert got("alarm.perimeter") and got("fault.device_offline"), agent.tail()
        agent.stop(crash)

        # While the agent is down, both conditions end.
        sim[2].set_zone_alarm(1, False)
        sim.inject(Fault.NONE, unit=3)

        agent.start()
        assert got("alarm.perimeter.restore") and got("fault.cleared"), agent.tail()
        assert agent.stop(signal.SIGTERM) == 0

        if crash == signal.SIGKILL:
            # A third run finds both closed: a new alarm is news, no end comes twice.
            agent.start()
            sim[2].set_zone_alarm(1, True)
            assert got("alarm.perimeter", 2), agent.tail()
            assert agent.stop(signal.SIGTERM) == 0

    events = county.events()
    alarm = unique(events, "alarm.perimeter")[0]
    (offline,) = unique(events, "fault.device_offline")
    (restore,) = unique(events, "alarm.perimeter.restore")
    (cleared,) = unique(events, "fault.cleared")
    assert restore["data"]["found_at_start"] is True
    assert restore["data"]["opened_id"] == alarm["id"]
    assert restore["zone"]["id"] == "fence-k261"
    assert cleared["data"]["found_at_start"] is True
    assert cleared["data"]["opened_id"] == offline["id"]
    assert cleared["data"]["cleared"] == "fault.device_offline"
    assert cleared["zone"]["id"] == "fence-k262"
    for message in county.messages:
        schemas.check(message.topic, message.payload)


# ---- real processes: GPIO inputs on a simulated post ------------------------------


def _set_wiring(path, in_alarm: list[str]) -> None:
    temp = path.with_name(path.name + ".new")
    temp.write_text(json.dumps(in_alarm))
    os.replace(temp, path)


def test_gpio_inputs_that_change_while_down(tmp_path, mosquitto, county_factory, schemas):
    # SIGKILL only: the ledger does not care how the run ended (the Modbus test does both).
    crash = signal.SIGKILL
    county = county_factory(mosquitto.port)
    wiring = tmp_path / "wiring.json"
    config = write_config(tmp_path / "post.yaml", post_config(tmp_path, mosquitto.port))

    def got(type: str, n: int = 1) -> bool:
        return county.wait_for(lambda m: len(unique(county.events(), type)) >= n, 40)

    _set_wiring(wiring, ["tamper-1"])  # an open tamper loop at the first start
    with AgentProcess(config, tmp_path / "agent.log", gpio_wiring=wiring) as agent:
        agent.start()
        assert got("alarm.tamper"), agent.tail()
        _set_wiring(wiring, ["tamper-1", "door-1"])
        assert got("alarm.intrusion"), agent.tail()
        agent.stop(crash)

        # Down: the tamper loop is closed again; the door stays open.
        _set_wiring(wiring, ["door-1"])
        agent.start()
        assert got("alarm.tamper.restore"), agent.tail()
        _set_wiring(wiring, [])
        assert got("alarm.intrusion.restore"), agent.tail()
        assert agent.stop(signal.SIGTERM) == 0

    events = county.events()
    (tamper,) = unique(events, "alarm.tamper")
    (door,) = unique(events, "alarm.intrusion")  # the open door was not reported again
    (tamper_end,) = unique(events, "alarm.tamper.restore")
    (door_end,) = unique(events, "alarm.intrusion.restore")
    assert tamper["data"]["at_start"] is True
    assert tamper_end["data"]["at_start"] is True  # the restart's first reading
    assert tamper_end["data"]["found_at_start"] is True
    assert tamper_end["data"]["opened_id"] == tamper["id"]
    # Opened by the earlier run, ended in this one.
    assert door_end["data"]["at_start"] is False
    assert door_end["data"]["found_at_start"] is True
    assert door_end["data"]["opened_id"] == door["id"]
    for message in county.messages:
        schemas.check(message.topic, message.payload)


# ---- Contact ID and cameras: the driver on the real Recorder, across two runs ------


class _Runs:
    """Recorder + outbox over one file; ``next()`` is a restart (a new run on what is left)."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.recorder, self.outbox = _recorder(tmp_path)

    def next(self) -> Recorder:
        self.outbox.close()
        self.recorder, self.outbox = _recorder(self.tmp_path)
        return self.recorder

    def events(self) -> list[dict]:
        self.outbox.flush()
        rows = self.outbox.next_rows({}, 10_000)
        return sorted((json.loads(r.payload) for r in rows if r.kind == "event"), key=_seq)

    def close(self) -> None:
        self.outbox.close()


def _seq(e: dict) -> int:
    return e["seq"]


def test_contact_id_conditions_close_once_across_a_restart(tmp_path):
    from shaobing.drivers.contact_id import ContactIdReceiver, format_raw
    from shaobing.drivers.serial_config import ContactIdConfig, ContactIdZoneMap

    now = [1000.0]
    cfg = ContactIdConfig(
        id="host-1",
        bus="line",
        zones=[ContactIdZoneMap(device_zone=3, zone="crossing")],
        default_zone="cabinet",
        heartbeat_timeout_s=60,
    )

    def frame(q: str, code: int, zone: int) -> bytes:
        return format_raw("1234", q, code, 1, zone).encode() + b"\r"

    runs = _Runs(tmp_path)
    try:
        host = ContactIdReceiver(cfg, runs.recorder, clock=lambda: now[0])
        assert host.feed(frame("1", 130, 3)) == b"\x06"  # zone 3 in alarm
        now[0] += 61
        host.check_heartbeat()  # then the host goes quiet: device_offline
        # Restart (whichever way: the ledger is committed with each event).
        host = ContactIdReceiver(cfg, runs.next(), clock=lambda: now[0])
        host.check_heartbeat()  # not yet due in this run
        # The host is heard again, with the restore it kept while we were down.
        assert host.feed(frame("3", 130, 3)) == b"\x06"
        now[0] += 1  # past the duplicate window: a second restore closes nothing
        assert host.feed(frame("3", 130, 3)) == b"\x06"
        events = runs.events()
    finally:
        runs.close()
    types = [(e["type"], e["zone"]["id"]) for e in events]
    assert types == [
        ("alarm.perimeter", "crossing"),
        ("fault.device_offline", "cabinet"),
        ("fault.device_offline", "crossing"),
        ("fault.cleared", "cabinet"),
        ("fault.cleared", "crossing"),
        ("alarm.perimeter.restore", "crossing"),
    ]
    alarm, *offline = events[:3]
    *cleared, restore = events[3:]
    assert restore["data"]["found_at_start"] and restore["data"]["opened_id"] == alarm["id"]
    assert [c["data"]["opened_id"] for c in cleared] == [o["id"] for o in offline]


def test_camera_down_at_stop_recovers_once_after_the_restart(tmp_path):
    import numpy as np
    from fake_camera import ScriptedSource, scripted_opener

    from shaobing.drivers.camera import Camera

    frame = np.zeros((4, 4, 3), np.uint8)
    runs = _Runs(tmp_path)
    try:
        # Run 1: the camera never opens.
        cam = Camera("gate", scripted_opener(), runs.recorder, backoff_min_s=0.02)
        cam.start()
        wait_for(lambda: cam.state == "down", what="camera down")
        cam.stop()
        # Run 2: still down at first, then frames: one recovered, found at start.
        recorder = runs.next()
        source = ScriptedSource([frame] * 3)
        cam = Camera(
            "gate",
            scripted_opener(ScriptedSource([], opened=False), source),
            recorder,
            backoff_min_s=0.02,
        )
        cam.start()
        wait_for(lambda: cam.slot.captured >= 3, what="frames")
        cam.stop()
        events = [e for e in runs.events() if e["type"] == "fault.camera"]
    finally:
        runs.close()
    # Run 2's failed first open was not a second "down". (The scripted stream
    # then ends: a new outage of this run may follow.)
    assert [e["data"]["state"] for e in events][:2] == ["down", "recovered"]
    down, up = events[:2]
    assert up["data"]["found_at_start"] and up["data"]["opened_id"] == down["id"]


def test_an_alarm_left_open_stays_latched_across_a_restart(tmp_path, mosquitto):
    """Not reported again, yet still open until the guard acknowledges it (GB 50394)."""
    from agent_harness import SimulatedPost

    config = config_for(tmp_path, mosquitto.port)
    post = SimulatedPost(config)
    try:
        post.wiring.trigger("door-1")
        wait_for(lambda: post.agent.sink.open_alarms(), what="door alarm latched")
        (before,) = post.agent.sink.open_alarms()
    finally:
        post.stop()
    post = SimulatedPost(config)  # the door was closed meanwhile: restored at the first reading
    try:
        (after,) = wait_for(post.agent.sink.open_alarms, what="carried over")
        assert after["alarm_id"] == before["alarm_id"]
        assert after["type"] == "alarm.intrusion" and after["zone"] == "cabinet"
        wait_for(lambda: post.agent.sink.open_alarms()[0]["restored"], what="restored")
        post.agent.sink.acknowledge("all", None, by="local", command_id=None)
        assert post.agent.sink.open_alarms() == []
    finally:
        post.stop()


def test_an_alarm_hosts_zones_sharing_one_zone_are_conditions_of_their_own(tmp_path):
    """Unmapped host zones all report in the default zone: each still opens and closes once."""
    from shaobing.drivers.contact_id import ContactIdReceiver, format_raw
    from shaobing.drivers.serial_config import ContactIdConfig

    cfg = ContactIdConfig(id="host-1", bus="line", default_zone="cabinet")
    runs = _Runs(tmp_path)
    try:
        host = ContactIdReceiver(cfg, runs.recorder)
        for q, zone in (("1", 5), ("1", 6), ("3", 5)):
            assert host.feed(format_raw("1234", q, 130, 1, zone).encode() + b"\r") == b"\x06"
        host = ContactIdReceiver(cfg, runs.next())
        assert host.feed(format_raw("1234", "3", 130, 1, 6).encode() + b"\r") == b"\x06"
        events = runs.events()
    finally:
        runs.close()
    assert [(e["type"], e["data"]["contact_id"]["zone"]) for e in events] == [
        ("alarm.perimeter", 5),
        ("alarm.perimeter", 6),
        ("alarm.perimeter.restore", 5),
        ("alarm.perimeter.restore", 6),
    ]
    assert events[3]["data"]["opened_id"] == events[1]["id"]


# ---- the invariant as a property: any history of changes and restarts ---------------


@given(
    st.lists(
        st.one_of(st.tuples(st.just("flip"), st.integers(0, 3)), st.just(("restart", 0))),
        max_size=40,
    )
)
def test_every_condition_opened_is_closed_exactly_once(steps):
    """A driver that reports changes and reconciles its first reading after each restart,
    on the ledger carried across runs: per condition, the recorded events alternate
    start, end, start...; after a last restart with everything normal, all are closed."""
    from hypothesis import note

    sources = [Source(kind="gpio", id=f"in-{i}") for i in range(4)]
    present = [False] * 4  # the physical truth
    recorded: dict[int, list[bool]] = {i: [] for i in range(4)}
    run = 1
    ledger = ConditionLedger([], run)

    def emit(i: int, on: bool) -> None:
        type = "alarm.intrusion" if on else "alarm.intrusion.restore"
        verdict = ledger.admit(type, sources[i], "z", {})
        if verdict.record:
            recorded[i].append(on)
            if verdict.change is not None:
                ledger.applied(verdict.change, f"e{len(recorded[i])}", 1, 0)

    def start() -> None:
        nonlocal run, ledger
        run += 1
        ledger = ConditionLedger(ledger.open(), run)  # what the outbox kept
        for i in range(4):
            if present[i] != ledger.opened_before(sources[i], "z", "alarm.intrusion"):
                emit(i, present[i])

    for action, i in steps:
        if action == "restart":
            start()
        else:
            present[i] = not present[i]
            emit(i, present[i])
    present[:] = [False] * 4
    start()
    note(str(recorded))
    for history in recorded.values():
        assert history == [True, False] * (len(history) // 2)
    assert ledger.open() == []
