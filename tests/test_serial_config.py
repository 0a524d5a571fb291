from __future__ import annotations

import pytest
from pydantic import ValidationError

from shaobing.drivers.serial_config import (
    ContactIdConfig,
    ModbusDetectorConfig,
    SerialBusConfig,
    SerialConfig,
    ZoneMap,
)


def _cfg(**kw):
    base = dict(
        buses=[
            SerialBusConfig(id="rs485", url="/dev/ttyUSB0"),
            SerialBusConfig(id="host", url="socket://10.0.0.5:4001", baudrate=2400),
        ],
        modbus=[
            ModbusDetectorConfig(
                id="fibre1",
                bus="rs485",
                unit=1,
                profile="vibration_fibre_8",
                zones=[ZoneMap(device_zone=1, zone="K261a")],
            ),
            ModbusDetectorConfig(
                id="fence1",
                bus="rs485",
                unit=2,
                profile="pulse_fence_2",
                zones=[ZoneMap(device_zone=2, zone="K262")],
                box_zone="post",
            ),
        ],
        contact_id=[ContactIdConfig(id="host1", bus="host", default_zone="post")],
    )
    return SerialConfig(**(base | kw))


def test_valid_config_and_zone_ids():
    c = _cfg()
    assert c.zone_ids() == {"K261a", "K262", "post"}
    assert c.bus("host").baudrate == 2400


def test_every_field_is_described():
    from shaobing.drivers import serial_config as mod

    for model in (
        mod.SerialBusConfig,
        mod.ZoneMap,
        mod.ModbusDetectorConfig,
        mod.ContactIdZoneMap,
        mod.ContactIdConfig,
        mod.SerialConfig,
    ):
        for name, f in model.model_fields.items():
            assert f.description, f"{model.__name__}.{name}"


def test_duplicate_unit_on_bus():
    m = ModbusDetectorConfig(
        id="x",
        bus="rs485",
        unit=1,
        profile="pulse_fence_2",
        zones=[ZoneMap(device_zone=1, zone="z")],
    )
    with pytest.raises(ValidationError, match="unit 1 already used"):
        _cfg(modbus=[*_cfg().modbus, m])


def test_contact_id_cannot_share_a_modbus_bus():
    with pytest.raises(ValidationError, match="already in use"):
        _cfg(contact_id=[ContactIdConfig(id="h", bus="rs485")])


def test_zone_beyond_profile():
    with pytest.raises(ValidationError, match="beyond the profile"):
        ModbusDetectorConfig(
            id="x",
            bus="b",
            unit=1,
            profile="pulse_fence_2",
            zones=[ZoneMap(device_zone=3, zone="z")],
        )


def test_unknown_key_and_profile():
    with pytest.raises(ValidationError):
        SerialBusConfig(id="b", url="/dev/ttyS0", baud=9600)
    with pytest.raises(ValidationError, match="no shipped profile"):
        ModbusDetectorConfig(
            id="x", bus="b", unit=1, profile="nope", zones=[ZoneMap(device_zone=1, zone="z")]
        )


def test_railway_example_loads_and_zones_resolve():
    from pathlib import Path

    from shaobing.agent.config import load_config

    cfg = load_config(Path(__file__).resolve().parents[1] / "examples" / "railway-post.yaml")
    assert [d.id for d in cfg.serial.modbus] == ["fibre-1", "fence-1"]
    assert cfg.serial.zone_ids() <= {z.id for z in cfg.zones}


def test_root_config_reports_unknown_serial_zone():
    from shaobing.agent.config import ConfigError, parse_config

    text = """
device: {id: sb-test-01}
site: {village_code: "130521104201", code_year: 2023, village_name: 东关村}
zones: [{id: a}]
control: {enabled: false}
serial:
  buses: [{id: b, url: /dev/ttyUSB0}]
  modbus:
    - {id: f, bus: b, unit: 1, profile: pulse_fence_2, zones: [{device_zone: 1, zone: nowhere}]}
"""
    with pytest.raises(ConfigError) as ei:
        parse_config(text)
    (problem,) = ei.value.problems
    assert problem.path == "serial.modbus[0].zones[0].zone"
    assert problem.line == 9
