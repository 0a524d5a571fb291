from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sinks import ListSink

from shaobing.drivers.contact_id import (
    ACK,
    NAK,
    ContactIdError,
    ContactIdReceiver,
    Qualifier,
    digit_sum,
    format_raw,
    parse,
    to_event,
)
from shaobing.drivers.serial_config import ContactIdConfig, ContactIdZoneMap


def cfg(**kw) -> ContactIdConfig:
    base = dict(
        id="host1",
        bus="b1",
        zones=[
            ContactIdZoneMap(device_zone=3, zone="K261-up"),
            ContactIdZoneMap(group=2, device_zone=3, zone="g2"),
        ],
        default_zone="post",
    )
    return ContactIdConfig(**(base | kw))


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


# --- parser ----------------------------------------------------------------


def test_checksum_rule_on_a_known_message():
    # 1+2+3+4 + 1+8 + 1 + 1+3+1 + 10+1 + 10+1+5 = 52 (0 counts 10); 52 + 8 = 60.
    assert format_raw("1234", "1", 131, 1, 15) == "1234181131010158"
    assert digit_sum("1234181131010158") == 60
    assert parse("1234181131010158").code == 131


def test_parses_raw_form():
    raw = format_raw("1234", "1", 130, 1, 3)
    m = parse(raw)
    assert (m.account, m.message_type, m.qualifier, m.code, m.group, m.zone) == (
        "1234",
        "18",
        Qualifier.NEW,
        130,
        1,
        3,
    )
    assert m.raw == raw


def test_parses_line_form_and_bytes():
    raw = format_raw("B2C4", "3", 137, 0, 12)
    line = f"{raw[0:4]} {raw[4:6]} {raw[6:10]} {raw[10:12]} {raw[12:15]} {raw[15]}"
    assert parse(line.encode()) == parse(raw)
    assert parse(line).account == "B2C4"


def test_bad_checksum_names_field_and_position():
    raw = format_raw("1234", "1", 130, 1, 3)
    bad = raw[:15] + ("1" if raw[15] != "1" else "2")
    with pytest.raises(ContactIdError) as ei:
        parse(bad)
    assert ei.value.field == "checksum"
    assert ei.value.position == 15
    assert "multiple of 15" in str(ei.value)


@pytest.mark.parametrize(
    ("frame", "field", "position"),
    [
        ("123418113001003", "frame", None),  # 15 digits
        ("1A34181130010030", "account", 1),  # A is not a Contact ID digit
        ("1234171130010030", "message type", 4),
        ("1234182130010030", "qualifier", 6),
        ("12341811B0010030", "event code", 8),
        ("1234 18 1130 01 0003 0", "zone", 16),
        ("\xff\xfe", "frame", 0),
        ("", "frame", None),
    ],
)
def test_errors_say_what_and_where(frame, field, position):
    with pytest.raises(ContactIdError) as ei:
        parse(frame.encode("latin-1"))
    assert ei.value.field == field
    assert ei.value.position == position


@pytest.mark.parametrize(
    ("code", "q", "etype", "state"),
    [
        (130, "1", "alarm.perimeter", "alarm"),
        (130, "3", "alarm.perimeter.restore", "restore"),
        (137, "1", "alarm.tamper", "alarm"),
        (383, "1", "alarm.tamper", "alarm"),
        (301, "1", "fault.ac_loss", "fault"),
        (301, "3", "fault.cleared", "restore"),
        (302, "1", "fault.low_battery", "fault"),
        (401, "1", "status.arming", "disarm"),
        (401, "3", "status.arming", "arm"),
        (602, "1", "status.heartbeat", "event"),
        (130, "6", "alarm.perimeter", "status"),
    ],
)
def test_mapping(code, q, etype, state):
    ev = to_event(parse(format_raw("1234", q, code, 1, 5)))
    assert ev.type == etype
    assert ev.data["state"] == state
    assert ev.data["contact_id"]["code"] == code
    if etype == "fault.cleared":
        assert ev.data["cleared"] == "fault.ac_loss"


def test_burglary_type_is_configurable():
    assert to_event(parse(format_raw("1234", "1", 131, 1, 5)), "alarm.intrusion").type == (
        "alarm.intrusion"
    )


_digits = st.text(alphabet="1234567890BCDEF", min_size=4, max_size=4)


@given(
    account=_digits,
    q=st.sampled_from("136"),
    code=st.integers(0, 999),
    group=st.integers(0, 99),
    zone=st.integers(0, 999),
)
def test_round_trip(account, q, code, group, zone):
    m = parse(format_raw(account, q, code, group, zone))
    assert (m.account, m.code, m.group, m.zone) == (account, code, group, zone)


@given(st.binary(max_size=40))
def test_parser_never_crashes(data):
    try:
        m = parse(data)
    except ContactIdError:
        return
    assert digit_sum(m.raw) % 15 == 0


@given(st.text(alphabet="0123456789ABCDEF ", min_size=14, max_size=24))
def test_parser_on_near_misses(text):
    try:
        m = parse(text)
    except ContactIdError:
        return
    assert digit_sum(m.raw) % 15 == 0


# --- receiver (protocol only, no port) ---------------------------------------


def test_receiver_acks_emits_and_locates():
    sink = ListSink()
    r = ContactIdReceiver(cfg(), sink)
    assert r.feed(format_raw("1234", "1", 130, 1, 3).encode() + b"\r") == ACK
    assert r.feed(format_raw("1234", "1", 130, 2, 3).encode() + b"\r\n") == ACK
    assert r.feed(format_raw("1234", "1", 301, 0, 0).encode() + b"\n") == ACK
    assert [(e.type, e.zone) for e in sink.events] == [
        ("alarm.perimeter", "K261-up"),
        ("alarm.perimeter", "K261-up"),  # group-less mapping listed first wins
        ("fault.ac_loss", "post"),
    ]
    assert sink.events[0].data["contact_id"]["raw"] == format_raw("1234", "1", 130, 1, 3)
    assert sink.events[0].source_kind == "contact_id"


def test_bad_checksum_is_nakked_counted_and_never_an_event():
    sink = ListSink()
    r = ContactIdReceiver(cfg(), sink)
    raw = format_raw("1234", "1", 130, 1, 3)
    bad = raw[:15] + ("1" if raw[15] != "1" else "2")
    assert r.feed(bad.encode() + b"\r") == NAK
    assert r.stats.checksum_errors == 1
    assert r.stats.rejected == 1
    assert sink.events == []


def test_retry_after_lost_ack_is_not_a_second_event():
    clock = Clock()
    sink = ListSink()
    r = ContactIdReceiver(cfg(), sink, clock=clock)
    frame = format_raw("1234", "1", 130, 1, 3).encode() + b"\r"
    assert r.feed(frame) == ACK
    clock.t += 2
    assert r.feed(frame) == ACK
    assert r.stats.duplicates == 1
    clock.t += 60  # long after: a new occurrence
    r.feed(frame)
    assert len(sink.events) == 2


def test_alarm_restore_alarm_are_three_events():
    sink = ListSink()
    r = ContactIdReceiver(cfg(), sink)
    for q in "131":
        r.feed(format_raw("1234", q, 130, 1, 3).encode() + b"\r")
    assert [(e.type, e.data["state"]) for e in sink.events] == [
        ("alarm.perimeter", "alarm"),
        ("alarm.perimeter.restore", "restore"),
        ("alarm.perimeter", "alarm"),
    ]


def test_foreign_account_acked_not_emitted():
    sink = ListSink()
    r = ContactIdReceiver(cfg(accounts=["9999"]), sink)
    assert r.feed(format_raw("1234", "1", 130, 1, 3).encode() + b"\r") == ACK
    assert r.stats.foreign_account == 1
    assert sink.events == []


def test_overlong_noise_is_bounded_and_counted():
    sink = ListSink()
    r = ContactIdReceiver(cfg(), sink)
    r.feed(b"7" * 500)
    r.feed(b"\r" + format_raw("1234", "1", 130, 1, 3).encode() + b"\r")
    assert r.stats.overlong == 1
    assert len(sink.events) == 1


def test_heartbeat_supervision():
    clock = Clock()
    sink = ListSink()
    r = ContactIdReceiver(cfg(heartbeat_timeout_s=30), sink, clock=clock)
    clock.t += 29
    r.check_heartbeat()
    assert sink.events == []
    clock.t += 2
    r.check_heartbeat()
    r.check_heartbeat()
    assert [(e.type, e.zone) for e in sink.events] == [
        ("fault.device_offline", "post"),
        ("fault.device_offline", "K261-up"),
        ("fault.device_offline", "g2"),
    ]
    r.feed(format_raw("1234", "1", 602, 0, 0).encode() + b"\r")
    assert sink.types()[3:] == ["fault.cleared"] * 3 + ["status.heartbeat"]


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=60), max_size=8))
def test_random_bytes_never_crash_or_invent_events(chunks):
    sink = ListSink()
    r = ContactIdReceiver(cfg(), sink)
    for c in chunks:
        reply = r.feed(c)
        assert set(reply) <= {ACK[0], NAK[0]}
    assert r.stats.events == len(sink.events) == r.stats.valid
    assert r.stats.frames == r.stats.valid + r.stats.rejected + r.stats.duplicates + (
        r.stats.foreign_account + r.stats.not_durable
    )
