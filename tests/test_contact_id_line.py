"""A simulated alarm host and the receiver talking over a pty or socket:// line."""

from __future__ import annotations

import pytest
from conftest import wait_for
from sinks import ListSink

from shaobing.drivers.contact_id import ACK, NAK, ContactIdLine, ContactIdReceiver
from shaobing.drivers.serial_bus import SerialBus
from shaobing.drivers.serial_config import ContactIdConfig, ContactIdZoneMap, SerialBusConfig
from shaobing.simulator.alarm_host import SimulatedAlarmHost


def start(host: SimulatedAlarmHost, **kw):
    cfg = ContactIdConfig(
        **(
            dict(
                id="host1",
                bus="b",
                zones=[ContactIdZoneMap(device_zone=5, zone="K261+160")],
                default_zone="post",
            )
            | kw
        )
    )
    sink = ListSink()
    rx = ContactIdReceiver(cfg, sink)
    line = ContactIdLine(
        rx, SerialBus(SerialBusConfig(id="b", url=host.url, baudrate=2400, timeout_s=0.05))
    )
    line.start()
    # Opening a tty flushes its input; a real host would just retry, the
    # tests want exact transmission counts.
    wait_for(lambda: line.bus.port is not None, what="receiver port open")
    return sink, rx, line


@pytest.fixture(params=[("pty", "raw"), ("socket", "line")])
def host(request):
    transport, framing = request.param
    h = SimulatedAlarmHost(transport=transport, framing=framing, ack_timeout_s=0.5)
    yield h
    h.close()


def test_alarm_and_restore_are_acknowledged_and_emitted(host):
    sink, _rx, line = start(host)
    try:
        assert host.alarm(130, zone=5)
        assert host.restore(130, zone=5)
        assert host.report(401, "3", 1, 7)  # closing (arm) by user 7
        wait_for(lambda: len(sink.events) == 3, what="three events")
    finally:
        line.stop()
    assert [(e.type, e.zone, e.data["state"]) for e in sink.events] == [
        ("alarm.perimeter", "K261+160", "alarm"),
        ("alarm.perimeter.restore", "K261+160", "restore"),
        ("status.arming", "post", "arm"),
    ]
    assert sink.events[0].data["contact_id"]["code"] == 130
    assert host.stats.transmissions == 3


def test_bad_checksum_nakked_then_host_retries_good_copy(host):
    sink, rx, line = start(host)
    try:
        good = host.encode("1", 137, 1, 5)
        assert host.send_once(host.bad_checksum(good)) == NAK
        assert host.send_once(b"\x00\xff\x13garbage\r") == NAK
        assert host.send_once(good[: len(good) // 2] + b"\r") == NAK
        assert host.send_bytes(good)
        wait_for(lambda: sink.events, what="tamper event")
    finally:
        line.stop()
    assert [e.type for e in sink.events] == ["alarm.tamper"]
    assert rx.stats.checksum_errors == 1
    assert rx.stats.rejected == 3


def test_lost_ack_retry_is_one_event(host):
    sink, rx, line = start(host)
    try:
        host.drop_acks = 1
        assert host.alarm(130, zone=5)
        assert host.stats.transmissions == 2
        wait_for(lambda: rx.stats.duplicates == 1, what="duplicate seen")
    finally:
        line.stop()
    assert len(sink.events) == 1


def test_heartbeat_loss_is_device_offline_then_cleared(host):
    sink, _rx, line = start(host, heartbeat_timeout_s=0.6, duplicate_window_s=0.02)
    try:
        host.heartbeat(0.1)
        wait_for(lambda: len(sink.of("status.heartbeat")) >= 2, what="heartbeats")
        host.stop_heartbeat()
        wait_for(lambda: sink.of("fault.device_offline"), what="offline")
        host.heartbeat(0.1)
        wait_for(lambda: sink.of("fault.cleared"), what="cleared")
    finally:
        host.stop_heartbeat()
        line.stop()
    assert [e.zone for e in sink.of("fault.device_offline")] == ["post", "K261+160"]


def test_ack_is_a_single_byte():
    assert ACK == b"\x06" and NAK == b"\x15"


def test_unreachable_device_server_goes_offline_by_heartbeat():
    import socket

    s = socket.create_server(("127.0.0.1", 0))
    url = f"socket://127.0.0.1:{s.getsockname()[1]}"
    s.close()  # nothing listens there now
    cfg = ContactIdConfig(id="host1", bus="b", default_zone="post", heartbeat_timeout_s=0.3)
    sink = ListSink()
    line = ContactIdLine(
        ContactIdReceiver(cfg, sink), SerialBus(SerialBusConfig(id="b", url=url, timeout_s=0.05))
    )
    line.start()
    try:
        wait_for(lambda: sink.of("fault.device_offline"), what="offline")
        wait_for(lambda: line.port_errors >= 1, what="port error counted")
    finally:
        line.stop()
    assert [e.zone for e in sink.events] == ["post"]
