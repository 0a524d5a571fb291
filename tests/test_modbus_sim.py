"""Real pymodbus RTU server (simulator) against the real client (driver)."""

from __future__ import annotations

import pytest
from conftest import wait_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sinks import ListSink

from shaobing.drivers.modbus import ModbusBusPoller, ModbusDetector
from shaobing.drivers.serial_bus import SerialBus
from shaobing.drivers.serial_config import ModbusDetectorConfig, SerialBusConfig, ZoneMap
from shaobing.simulator.modbus_device import Fault, SimulatedDetector, SimulatedModbusBus


@pytest.fixture(params=["socket", "pty"])
def line(request):
    sim = SimulatedModbusBus(
        [SimulatedDetector(1, "vibration_fibre_8"), SimulatedDetector(2, "pulse_fence_2")],
        transport=request.param,
        seed=5,
    )
    sim.start()
    bus = SerialBus(SerialBusConfig(id="rs485", url=sim.url, timeout_s=0.2))
    yield sim, bus
    bus.close()
    sim.stop()


def fibre(bus, sink, **kw):
    cfg = ModbusDetectorConfig(
        **(
            dict(
                id="fibre1",
                bus="rs485",
                unit=1,
                profile="vibration_fibre_8",
                retries=0,
                offline_after_missed=3,
                zones=[
                    ZoneMap(device_zone=1, zone="K261+160"),
                    ZoneMap(device_zone=2, zone="K261+400"),
                ],
            )
            | kw
        )
    )
    return ModbusDetector(cfg, bus, sink)


def fence(bus, sink):
    cfg = ModbusDetectorConfig(
        id="fence1",
        bus="rs485",
        unit=2,
        profile="pulse_fence_2",
        retries=0,
        zones=[ZoneMap(device_zone=1, zone="fence-a")],
        box_zone="post",
    )
    return ModbusDetector(cfg, bus, sink)


def test_quiet_device_emits_nothing(line):
    _sim, bus = line
    sink = ListSink()
    d = fibre(bus, sink)
    for _ in range(3):
        assert d.poll_once()
    assert sink.events == []


def test_zone_alarm_and_restore_are_one_event_each(line):
    sim, bus = line
    sink = ListSink()
    d = fibre(bus, sink)
    d.poll_once()
    sim[1].set_zone_alarm(2, True)
    for _ in range(3):
        d.poll_once()
    sim[1].set_zone_alarm(2, False)
    for _ in range(3):
        d.poll_once()
    assert [(e.type, e.zone, e.data["state"]) for e in sink.events] == [
        ("alarm.perimeter", "K261+400", "alarm"),
        ("alarm.perimeter.restore", "K261+400", "restore"),
    ]
    assert sink.events[1].severity == "info"
    e = sink.events[0]
    assert e.data["device_zone"] == 2
    assert e.data["raw"]["bits"]["zone_alarm"] is True
    assert e.source_kind == "modbus" and e.source_id == "fibre1"


def test_unwired_zone_is_silent_and_active_at_start_is_reported(line):
    sim, bus = line
    sim[1].set_zone_alarm(7, True)  # not mapped
    sim[1].set_bit("cable_cut", 1, True)
    sink = ListSink()
    d = fibre(bus, sink)
    d.poll_once()
    d.poll_once()
    assert [(e.type, e.zone) for e in sink.events] == [("fault.cable_cut", "K261+160")]
    sim[1].set_bit("cable_cut", 1, False)
    d.poll_once()
    assert sink.events[-1].type == "fault.cleared"
    assert sink.events[-1].data["cleared"] == "fault.cable_cut"


def test_tamper_and_low_voltage_are_their_own_types(line):
    sim, bus = line
    sink = ListSink()
    d = fence(bus, sink)
    d.poll_once()
    sim[2].set_bit("tamper", None, True)
    sim[2].set_zone_alarm(1, True)
    d.poll_once()
    sim[2].set_value("supply_voltage", None, 10.8)
    d.poll_once()
    sim[2].set_value("supply_voltage", None, 11.2)  # inside the hysteresis band
    d.poll_once()
    sim[2].set_value("supply_voltage", None, 11.6)
    d.poll_once()
    assert [(e.type, e.zone) for e in sink.events] == [
        ("alarm.perimeter", "fence-a"),
        ("alarm.tamper", "post"),
        ("fault.low_voltage", "post"),
        ("fault.cleared", "post"),
    ]
    assert sink.events[2].data["value"] == pytest.approx(10.8)


def test_arming_write_reaches_the_device(line):
    sim, bus = line
    sink = ListSink()
    d = fence(bus, sink)
    d.poll_once()
    d.set_armed(1, True)
    d.poll_once()
    assert ("holding_register", 64, 1) in sim[2].writes
    assert [(e.type, e.data["state"]) for e in sink.events] == [("status.arming", "arm")]


def test_offline_then_cleared(line):
    sim, bus = line
    sink = ListSink()
    d = fibre(bus, sink)
    d.poll_once()
    sim.inject(Fault.SILENT, unit=1)
    for _ in range(2):
        assert not d.poll_once()
    assert sink.events == []
    d.poll_once()
    d.poll_once()
    assert [(e.type, e.zone) for e in sink.events] == [
        ("fault.device_offline", "K261+160"),
        ("fault.device_offline", "K261+400"),
    ]
    sim[1].set_zone_alarm(1, True)  # changed while unreachable
    sim.inject(Fault.NONE, unit=1)
    assert d.poll_once()
    assert [(e.type, e.zone) for e in sink.events[2:]] == [
        ("fault.cleared", "K261+160"),
        ("fault.cleared", "K261+400"),
        ("alarm.perimeter", "K261+160"),
    ]
    assert d.stats.timeouts == 4


@pytest.mark.parametrize(
    "fault", [Fault.BAD_CRC, Fault.CORRUPT, Fault.HALF_FRAME, Fault.RANDOM_BYTES]
)
def test_broken_replies_are_counted_never_events(line, fault):
    sim, bus = line
    sink = ListSink()
    d = fibre(bus, sink, offline_after_missed=100)
    d.poll_once()
    sim.inject(fault, unit=1)
    for _ in range(4):
        assert not d.poll_once()
    sim.inject(Fault.NONE, unit=1)
    assert d.poll_once()
    assert sink.events == []
    assert d.stats.missed == 4
    assert d.stats.bad_frames == 4


def test_a_faulty_unit_does_not_disturb_its_neighbour(line):
    sim, bus = line
    sink = ListSink()
    a, b = fibre(bus, sink), fence(bus, sink)
    sim.inject(Fault.RANDOM_BYTES, unit=1)
    for _ in range(3):
        a.poll_once()
        assert b.poll_once()
    sim[2].set_zone_alarm(1, True)
    assert b.poll_once()
    assert [e.type for e in sink.events if e.source_id == "fence1"] == ["alarm.perimeter"]


def test_poller_thread_end_to_end(line):
    sim, bus = line
    sink = ListSink()
    a, b = fibre(bus, sink, poll_period_s=0.05), fence(bus, sink)
    poller = ModbusBusPoller(bus, [a, b])
    poller.start()
    try:
        wait_for(lambda: a.stats.ok >= 2, what="first polls")
        sim[1].set_zone_alarm(1, True)
        wait_for(lambda: sink.of("alarm.perimeter"), what="alarm")
        sim[1].set_zone_alarm(1, False)
        wait_for(lambda: sink.of("alarm.perimeter.restore"), what="restore")
    finally:
        poller.stop()
    assert len(sink.of("alarm.perimeter")) == 1
    assert len(sink.of("alarm.perimeter.restore")) == 1


def test_mixed_faults_events_match_the_truth(line):
    """Random broken replies between real changes: events are exactly the real edges."""
    import random

    sim, bus = line
    rng = random.Random(11)
    sink = ListSink()
    d = fibre(bus, sink, offline_after_missed=1000)
    faults = [f for f in Fault if f is not Fault.NONE]
    truth: list[str] = []
    alarm = False
    d.poll_once()
    for i in range(40):
        if i % 8 == 7:
            alarm = not alarm
            sim[1].set_zone_alarm(1, alarm)
            truth.append("alarm.perimeter" if alarm else "alarm.perimeter.restore")
            # make sure the change is seen before the next fault burst
            while not d.poll_once():
                pass
        elif rng.random() < 0.5:
            sim.inject(rng.choice(faults), unit=1, count=1)
            d.poll_once()
        else:
            assert d.poll_once()
    assert sink.types() == truth
    assert d.stats.missed == d.stats.bad_frames + d.stats.timeouts > 0


def test_profile_that_does_not_fit_the_device_is_an_exception_not_an_event():
    # The unit is a fence host but the config says fibre controller: the
    # device answers "illegal address", which must read as a missed poll.
    with SimulatedModbusBus([SimulatedDetector(1, "pulse_fence_2")]) as sim:
        bus = SerialBus(SerialBusConfig(id="rs485", url=sim.url, timeout_s=0.2))
        sink = ListSink()
        d = fibre(bus, sink, offline_after_missed=2)
        for _ in range(2):
            assert not d.poll_once()
        bus.close()
    assert d.stats.exceptions == 2
    assert sink.types() == ["fault.device_offline", "fault.device_offline"]


def test_device_server_restart_reopens_the_port():
    """socket:// to a serial device server that reboots: offline, then back."""
    sim = SimulatedModbusBus([SimulatedDetector(1, "vibration_fibre_8")])
    sim.start()
    port = int(sim.url.rsplit(":", 1)[1])
    bus = SerialBus(SerialBusConfig(id="rs485", url=sim.url, timeout_s=0.2))
    sink = ListSink()
    d = fibre(bus, sink, offline_after_missed=2)
    try:
        assert d.poll_once()
        sim.stop()
        for _ in range(3):
            assert not d.poll_once()
        sim = SimulatedModbusBus([SimulatedDetector(1, "vibration_fibre_8")], tcp_port=port)
        sim.start()
        sim[1].set_zone_alarm(1, True)
        wait_for(d.poll_once, what="poll after restart")
    finally:
        bus.close()
        sim.stop()
    assert sink.types() == ["fault.device_offline"] * 2 + ["fault.cleared"] * 2 + [
        "alarm.perimeter"
    ]
    assert bus.opens >= 2


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(reply=st.binary(min_size=0, max_size=40))
def test_fuzzed_replies_never_crash_or_become_events(modbus_socket_line, reply):
    sim, bus = modbus_socket_line
    sink = ListSink()
    d = fibre(bus, sink, offline_after_missed=1000)
    assert d.poll_once()
    sim.inject_reply(reply, unit=1)
    d.poll_once()
    sim.clear_faults()
    assert d.poll_once()
    assert sink.events == []


@pytest.fixture(scope="module")
def modbus_socket_line():
    sim = SimulatedModbusBus([SimulatedDetector(1, "vibration_fibre_8")], seed=1)
    sim.start()
    bus = SerialBus(SerialBusConfig(id="rs485", url=sim.url, timeout_s=0.1))
    yield sim, bus
    bus.close()
    sim.stop()
