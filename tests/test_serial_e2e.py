"""End to end through a real Mosquitto: simulated serial detectors -> agent -> county."""

from __future__ import annotations

import pytest
from conftest import config_for, wait_for
from gpiozero.pins.mock import MockFactory

from shaobing.agent.config import RailwayConfig, ZoneConfig
from shaobing.agent.runtime import Agent
from shaobing.drivers.serial_config import (
    ContactIdConfig,
    ContactIdZoneMap,
    ModbusDetectorConfig,
    SerialBusConfig,
    SerialConfig,
    ZoneMap,
)
from shaobing.simulator.alarm_host import SimulatedAlarmHost
from shaobing.simulator.modbus_device import Fault, SimulatedDetector, SimulatedModbusBus

FENCE_ZONE = ZoneConfig(
    id="fence-k261",
    name="K261 护网电子围栏",
    railway=RailwayConfig(line="京广线", start="K261+160", end="K261+400", side="上行"),
    cameras=["cam-1"],
)
HOST_ZONE = ZoneConfig(
    id="fibre-k262",
    railway=RailwayConfig(line="京广线", start="K262+000", end="K262+300", side="下行"),
)


def agent_with(tmp_path, port, serial: SerialConfig) -> Agent:
    base = config_for(tmp_path, port)
    config = base.model_copy(
        update={"zones": [*base.zones, FENCE_ZONE, HOST_ZONE], "serial": serial}
    )
    agent = Agent(config, pin_factory=MockFactory())
    agent.start()
    return agent


@pytest.fixture
def fence_line():
    sim = SimulatedModbusBus([SimulatedDetector(2, "pulse_fence_2")], transport="pty")
    sim.start()
    yield sim
    sim.stop()


def test_fence_alarm_restore_offline_cleared(
    tmp_path, mosquitto, county_factory, schemas, fence_line
):
    sim = fence_line
    county = county_factory(mosquitto.port)
    serial = SerialConfig(
        buses=[SerialBusConfig(id="rs485-1", url=sim.url, timeout_s=0.2)],
        modbus=[
            ModbusDetectorConfig(
                id="fence-1",
                bus="rs485-1",
                unit=2,
                profile="pulse_fence_2",
                poll_period_s=0.1,
                retries=0,
                offline_after_missed=3,
                zones=[ZoneMap(device_zone=1, zone="fence-k261")],
            )
        ],
    )
    agent = agent_with(tmp_path, mosquitto.port, serial)
    detector = agent.serial.detector("fence-1")
    try:
        wait_for(lambda: detector.stats.ok >= 2, what="first polls")
        sim[2].set_zone_alarm(1, True)
        assert county.wait_for(lambda m: county.events("alarm.perimeter"), 10)
        sim[2].set_zone_alarm(1, False)
        assert county.wait_for(lambda m: county.events("alarm.perimeter.restore"), 10)
        sim.inject(Fault.SILENT, unit=2)
        assert county.wait_for(lambda m: county.events("fault.device_offline"), 10)
        sim.inject(Fault.NONE, unit=2)
        assert county.wait_for(lambda m: county.events("fault.cleared"), 10)
        polls = detector.stats.ok
        wait_for(lambda: detector.stats.ok >= polls + 3, what="polls after recovery")
    finally:
        agent.stop()
    types = [e["type"] for e in county.events() if e["source"]["kind"] == "modbus"]
    assert types == [
        "alarm.perimeter",
        "alarm.perimeter.restore",
        "fault.device_offline",
        "fault.cleared",
    ]
    alarm, restore, offline, cleared = (
        e for e in county.events() if e["source"]["kind"] == "modbus"
    )
    assert alarm["zone"]["id"] == "fence-k261"
    assert alarm["zone"]["railway"] == {
        "line": "京广线",
        "start": "K261+160",
        "end": "K261+400",
        "side": "上行",
    }
    assert alarm["source"] == {"kind": "modbus", "id": "fence-1"}
    assert alarm["data"]["state"] == "alarm" and alarm["data"]["device_zone"] == 1
    assert alarm["severity"] == "major"
    assert restore["data"]["state"] == "restore" and restore["severity"] == "info"
    assert offline["zone"]["id"] == cleared["zone"]["id"] == "fence-k261"
    assert cleared["data"]["cleared"] == "fault.device_offline"
    for message in county.messages:
        schemas.check(message.topic, message.payload)


def test_contact_id_host_through_the_agent(tmp_path, mosquitto, county_factory, schemas):
    county = county_factory(mosquitto.port)
    with SimulatedAlarmHost(transport="socket", framing="line", ack_timeout_s=0.5) as host:
        serial = SerialConfig(
            buses=[SerialBusConfig(id="host-line", url=host.url, baudrate=2400, timeout_s=0.05)],
            contact_id=[
                ContactIdConfig(
                    id="host-1",
                    bus="host-line",
                    zones=[ContactIdZoneMap(device_zone=3, zone="fibre-k262")],
                    default_zone="cabinet",
                )
            ],
        )
        agent = agent_with(tmp_path, mosquitto.port, serial)
        receiver = agent.serial.receivers[0]
        try:
            # A host writing before the receiver has connected would only retry.
            wait_for(lambda: agent.serial.lines[0].bus.port is not None, what="receiver connected")
            good = host.encode("1", 130, 1, 3)
            assert host.send_bytes(host.bad_checksum(good), attempts=1) is False
            assert host.send_bytes(good)
            assert host.restore(130, zone=3)
            assert host.report(301)  # AC loss at the host
            assert county.wait_for(lambda m: len(county.events("fault.ac_loss")) == 1, 10)
        finally:
            agent.stop()
    events = [e for e in county.events() if e["source"]["kind"] == "contact_id"]
    assert [(e["type"], e["zone"]["id"]) for e in events] == [
        ("alarm.perimeter", "fibre-k262"),
        ("alarm.perimeter.restore", "fibre-k262"),
        ("fault.ac_loss", "cabinet"),
    ]
    assert events[0]["zone"]["railway"]["side"] == "下行"
    assert events[0]["data"]["contact_id"]["raw"] == good.decode().replace(" ", "").strip()
    assert receiver.stats.checksum_errors == 1
    for message in county.messages:
        schemas.check(message.topic, message.payload)
