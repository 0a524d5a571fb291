from __future__ import annotations

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from shaobing.drivers.profile import (
    DeviceProfile,
    ProfileDecodeError,
    builtin_profiles,
    decode,
    load_profile,
    read_plan,
)


def test_shipped_profiles_load():
    assert {"vibration_fibre_8", "pulse_fence_2"} <= set(builtin_profiles())
    for name in builtin_profiles():
        p = load_profile(name)
        assert p.model == name


def test_every_profile_field_is_described():
    from shaobing.drivers import profile as mod

    for model in (mod.BitPoint, mod.ValuePoint, mod.ArmingSpec, mod.DeviceProfile):
        for name, f in model.model_fields.items():
            assert f.description, f"{model.__name__}.{name}"


def test_read_plan_covers_packed_register_bits():
    p = load_profile("pulse_fence_2")
    assert read_plan(p) == {"holding_register": (16, 33)}


def test_decode_packed_bits_and_values():
    p = load_profile("pulse_fence_2")
    regs = [0] * 33
    regs[0] = 0b0001_0001_0001_0010  # zone 2 alarm, zone 1 cut, tamper, zone 1 armed
    regs[16] = 92  # zone 1 fence 9.2 kV
    regs[32] = 1180  # 11.80 V
    s = decode(p, {"holding_register": regs})
    assert s.bits[("zone_alarm", 1)] is False
    assert s.bits[("zone_alarm", 2)] is True
    assert s.bits[("cable_cut", 1)] is True
    assert s.bits[("tamper", None)] is True
    assert s.bits[("armed", 1)] is True
    assert s.values[("fence_kv", 1)] == pytest.approx(9.2)
    assert s.values[("supply_voltage", None)] == pytest.approx(11.8)


def test_active_low_and_32bit_values(tmp_path):
    doc = {
        "model": "nc_loop",
        "description": "closed loop inputs",
        "zones": 2,
        "bits": [
            {
                "kind": "zone_alarm",
                "table": "discrete_input",
                "address": 4,
                "per_zone": True,
                "active_low": True,
            }
        ],
        "values": [
            {
                "name": "count",
                "table": "input_register",
                "address": 0,
                "type": "int32",
                "word_order": "little",
            }
        ],
    }
    f = tmp_path / "nc_loop.yaml"
    f.write_text(yaml.safe_dump(doc))
    p = load_profile(f)
    s = decode(p, {"discrete_input": [1, 0], "input_register": [0xFFFE, 0xFFFF]})
    assert s.bits == {("zone_alarm", 1): False, ("zone_alarm", 2): True}
    assert s.values[("count", None)] == -2


@pytest.mark.parametrize(
    "change",
    [
        {"extra": 1},
        {"bits": [{"kind": "zone_alarm", "table": "coil", "address": 0, "bit": 3}]},
        {"bits": [{"kind": "tamper", "table": "coil", "address": 0}]},
        {
            "bits": [
                {"kind": "zone_alarm", "table": "coil", "address": 0},
                {"kind": "tamper", "table": "coil", "address": 3000},
            ]
        },
        {"zones": 0},
    ],
)
def test_invalid_profiles_are_rejected(change):
    doc = {
        "model": "x",
        "description": "x",
        "zones": 1,
        "bits": [{"kind": "zone_alarm", "table": "coil", "address": 0}],
    } | change
    with pytest.raises(ValidationError):
        DeviceProfile.model_validate(doc)


def test_short_block_is_a_decode_error():
    p = load_profile("vibration_fibre_8")
    with pytest.raises(ProfileDecodeError):
        decode(p, {"discrete_input": [0] * 3, "coil": [0] * 8, "input_register": [0] * 9})


@settings(max_examples=200)
@given(data=st.data(), name=st.sampled_from(["vibration_fibre_8", "pulse_fence_2"]))
def test_decode_fuzz(data, name):
    """Any block contents either decode to booleans/finite numbers or raise ProfileDecodeError."""
    p = load_profile(name)
    blocks = {}
    for table, (_, count) in read_plan(p).items():
        n = data.draw(st.integers(0, count + 3))
        hi = 1 if table in ("coil", "discrete_input") else 0xFFFF
        blocks[table] = data.draw(st.lists(st.integers(-5, hi + 5), min_size=n, max_size=n))
    try:
        s = decode(p, blocks)
    except ProfileDecodeError:
        return
    assert all(isinstance(v, bool) for v in s.bits.values())
    assert len([k for k in s.bits if k[0] == "zone_alarm"]) == p.zones
