"""GB/T 28181 alarm codes on every alarm and fault event, and the 20-digit ids in the config."""

from __future__ import annotations

import pytest
from agent_harness import SimulatedPost
from conftest import EXAMPLE, config_for
from hypothesis import given
from hypothesis import strategies as st

from shaobing.agent.config import ConfigError, load_config, parse_config, validate_config
from shaobing.core.events import Source
from shaobing.core.gb28181 import Gb28181Config, Gb28181Mapper, check_id

DEVICE_ID = "13052110001170000001"  # type 117: alarm controller
PANIC_ID = "13052110001340000001"  # type 134: alarm input
CAMERA_ID = "13052110001320000001"  # type 132: network camera
SIREN_ID = "13052110001350000001"  # type 135: alarm output


def with_gb(gb: dict, **extra) -> dict:
    data = load_config(EXAMPLE).model_dump(mode="json")
    data["gb28181"] = gb
    data.update(extra)
    return data


def problems(data: dict) -> list[str]:
    found: list = []
    validate_config(data, problems=found)
    return [str(p) for p in found]


@pytest.mark.parametrize(
    ("event", "kind", "expected"),
    [
        ("alarm.intrusion", "camera", (5, 6, 2)),
        ("alarm.perimeter", "camera", (5, 5, 2)),
        ("alarm.loitering", "camera", (5, 8, 3)),
        ("alarm.tripwire", "camera", (5, 5, 2)),
        ("alarm.intrusion", "gpio", (2, None, 2)),
        ("alarm.intrusion.restore", "gpio", (2, None, 2)),
        ("alarm.panic", "gpio", (2, None, 1)),
        ("alarm.tamper", "gpio", (2, 2, 2)),
        ("alarm.perimeter", "modbus", (2, None, 2)),
        ("alarm.fire", "contact_id", (2, None, 1)),
        ("alarm.something_new", "gpio", (2, None, 3)),
        ("alarm.something_new", "camera", (5, None, 3)),
        ("fault.camera", "camera", (2, 1, 3)),
        ("fault.storage", "agent", (6, 1, 2)),
        ("fault.device_offline", "modbus", (6, None, 3)),
    ],
)
def test_every_alarm_and_fault_type_has_a_code(event, kind, expected):
    code = Gb28181Mapper(Gb28181Config()).code(event, kind, "x", "crossing")
    assert code is not None
    assert (code.method, code.type, code.priority) == expected


@given(st.from_regex(r"status(\.[a-z_]{1,8}){1,2}", fullmatch=True))
def test_status_events_carry_no_code(event):
    assert Gb28181Mapper(Gb28181Config()).code(event, "agent", "x", None) is None


def test_rules_apply_in_order_per_zone_source_and_event():
    config = Gb28181Config.model_validate(
        {
            "rules": [
                {"zone": "crossing", "priority": 1},
                {"source": "pir-1", "event": "alarm.intrusion", "method": 5, "alarm_type": 6},
                {"zone": "cabinet", "event": "alarm.tamper", "priority": 4},
            ]
        }
    )
    mapper = Gb28181Mapper(config)
    pir = mapper.code("alarm.intrusion", "gpio", "pir-1", "crossing")
    assert (pir.method, pir.type, pir.priority) == (5, 6, 1)
    other = mapper.code("alarm.intrusion", "gpio", "door-1", "crossing")
    assert (other.method, other.type, other.priority) == (2, None, 1)
    tamper = mapper.code("alarm.tamper.restore", "gpio", "tamper-1", "cabinet")
    assert (tamper.method, tamper.type, tamper.priority) == (2, 2, 4)


def test_ids_are_validated_with_clear_errors():
    ok = with_gb(
        {
            "device_id": DEVICE_ID,
            "channels": {"panic-1": PANIC_ID, "siren-1": SIREN_ID},
        }
    )
    assert problems(ok) == []
    wrong_type = with_gb({"channels": {"panic-1": CAMERA_ID}})
    assert any("type code 132, expected 134" in p for p in problems(wrong_type))
    unknown = with_gb({"channels": {"nobody": PANIC_ID}})
    assert any("'nobody' is not an input, camera" in p for p in problems(unknown))
    twice = with_gb({"channels": {"panic-1": PANIC_ID, "pir-1": PANIC_ID}})
    assert any("already used by 'panic-1'" in p for p in problems(twice))
    short = with_gb({"device_id": "1305211000117"})
    assert any("has 13 digits; GB/T 28181 ids have 20" in p for p in problems(short))
    device_as_input = with_gb({"device_id": PANIC_ID})
    assert any("type code 134, expected 111..130" in p for p in problems(device_as_input))
    bad_rule = with_gb({"rules": [{"zone": "nowhere", "method": 5, "alarm_type": 40}]})
    msgs = problems(bad_rule)
    assert any("AlarmType 40 is not defined for method 5" in p for p in msgs)
    lone_type = with_gb({"rules": [{"zone": "crossing", "alarm_type": 6}]})
    assert any("alarm_type needs method too" in p for p in problems(lone_type))
    empty_rule = with_gb({"rules": [{"zone": "crossing"}]})
    assert any("must set at least one of" in p for p in problems(empty_rule))


def test_an_unquoted_id_in_yaml_is_named_with_its_line():
    text = EXAMPLE.read_text(encoding="utf-8") + f"\ngb28181:\n  device_id: {DEVICE_ID}\n"
    with pytest.raises(ConfigError) as err:
        parse_config(text)
    (problem,) = err.value.problems
    assert problem.path == "gb28181.device_id" and problem.line is not None
    assert "must be quoted" in problem.message


FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")


@given(st.text(alphabet="0123456789", min_size=7, max_size=7))
def test_full_width_digits_are_taken_and_other_characters_named(serial):
    plain = "1305211000" + "134" + serial
    assert check_id(plain.translate(FULL_WIDTH), (134,)) == plain
    broken = plain[:5] + "O" + plain[6:]  # a letter O typed for a zero
    with pytest.raises(ValueError, match=r"'O' \(U\+004F\) at position 6 is not a digit"):
        check_id(broken)


def test_events_carry_the_code_and_ids_and_match_the_schema(
    tmp_path, mosquitto, county_factory, schemas
):
    base = config_for(tmp_path, mosquitto.port).model_dump(mode="json")
    base["gb28181"] = {
        "device_id": DEVICE_ID,
        "channels": {"panic-1": PANIC_ID},
        "rules": [{"source": "tamper-1", "priority": 1}],
    }
    config = validate_config(base)
    county = county_factory(mosquitto.port)
    post = SimulatedPost(config)
    try:
        post.wiring.trigger("panic-1")
        post.wiring.cut_wire("tamper-1")
        post.agent.recorder.emit("status.test", Source(kind="agent", id="test"))
        assert county.wait_for(
            lambda m: (
                county.events("alarm.panic")
                and county.events("alarm.tamper")
                and county.events("status.test")
            ),
            15,
        )
    finally:
        post.stop()
    (panic,) = county.events("alarm.panic")
    assert panic["gb28181"] == {
        "method": 2,
        "type": None,
        "priority": 1,
        "device_id": DEVICE_ID,
        "channel_id": PANIC_ID,
    }
    (tamper,) = [e for e in county.events("alarm.tamper") if e["type"] == "alarm.tamper"]
    assert tamper["gb28181"]["type"] == 2 and tamper["gb28181"]["priority"] == 1
    assert tamper["gb28181"]["channel_id"] is None
    assert county.events("status.test")[0]["gb28181"] is None
    for message in county.messages:
        schemas.check(message.topic, message.payload)
