"""Arm state: modes, schedules across midnight, overrides that lapse, persistence."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shaobing.agent.arming import Arming, ArmingError, in_window, next_boundary
from shaobing.agent.config import ArmingConfig, ScheduleConfig

TZ = dt.timezone(dt.timedelta(hours=8))  # Asia/Shanghai has had no DST since 1991


def at(y, mo, d, h, mi=0) -> dt.datetime:
    return dt.datetime(y, mo, d, h, mi, tzinfo=TZ)


class FakeTime:
    def __init__(self, when: dt.datetime, trusted: bool = True):
        self.t = when.timestamp()
        self.trusted = trusted

    def set(self, when: dt.datetime) -> None:
        self.t = when.timestamp()


NIGHT = ScheduleConfig(start="20:00", end="06:00", days=["mon"])


def test_window_spanning_midnight_belongs_to_its_start_day():
    # 2026-11-23 is a Monday.
    assert in_window(NIGHT, at(2026, 11, 23, 21))
    assert in_window(NIGHT, at(2026, 11, 24, 5, 59))
    assert not in_window(NIGHT, at(2026, 11, 24, 6, 0))
    assert not in_window(NIGHT, at(2026, 11, 24, 21))  # Tuesday evening: not a listed day
    assert not in_window(NIGHT, at(2026, 11, 23, 5))  # Monday early: Sunday's window
    day = ScheduleConfig(start="08:00", end="17:30")
    assert in_window(day, at(2026, 11, 25, 8)) and not in_window(day, at(2026, 11, 25, 17, 30))


def test_next_boundary():
    assert next_boundary([NIGHT], at(2026, 11, 23, 15)) == at(2026, 11, 23, 20)
    assert next_boundary([NIGHT], at(2026, 11, 23, 20)) == at(2026, 11, 24, 6)
    assert next_boundary([NIGHT], at(2026, 11, 24, 7)) == at(2026, 11, 30, 20)


@given(
    start=st.integers(0, 1439),
    length=st.integers(1, 1439),
    days=st.sets(st.sampled_from(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]), min_size=1),
    minute=st.integers(0, 7 * 1440 - 1),
)
def test_state_is_constant_until_the_next_boundary(start, length, days, minute):
    end = (start + length) % 1440
    sched = ScheduleConfig(
        start=f"{start // 60:02d}:{start % 60:02d}",
        end=f"{end // 60:02d}:{end % 60:02d}",
        days=sorted(days),
    )
    t = at(2026, 11, 23, 0) + dt.timedelta(minutes=minute)
    boundary = next_boundary([sched], t)
    assert boundary is not None and boundary > t
    before = in_window(sched, t)
    probe = t
    while probe < boundary - dt.timedelta(minutes=1):
        probe += dt.timedelta(minutes=97)
        if probe < boundary:
            assert in_window(sched, probe) == before


def make(tmp_path, clock: FakeTime, **arming) -> Arming:
    config = ArmingConfig.model_validate({"timezone": "Asia/Shanghai", **arming})
    return Arming(
        config, ["crossing", "cabinet", "yard"], tmp_path / "arming.json",
        lambda: clock.trusted, now=lambda: clock.t,
    )  # fmt: skip


SCHEDULED = {
    "zones": [
        {"zone": "crossing", "mode": "schedule", "schedules": [{"start": "20:00", "end": "06:00"}]},
        {"zone": "cabinet", "mode": "24h"},
    ]
}


def test_schedule_and_override_lapsing_at_the_next_boundary(tmp_path):
    clock = FakeTime(at(2026, 11, 23, 15))
    arming = make(tmp_path, clock, **SCHEDULED)
    assert arming.state("crossing").state == "disarmed"
    clock.set(at(2026, 11, 23, 21))
    assert arming.state("crossing").state == "armed"
    outcome = arming.set(["crossing"], "disarmed", by="cmd-1")
    assert outcome["crossing"]["changed"] is True
    assert outcome["crossing"]["until_ms"] == int(at(2026, 11, 24, 6).timestamp() * 1000)
    clock.set(at(2026, 11, 24, 5))
    assert arming.state("crossing").why == "override"
    clock.set(at(2026, 11, 24, 20, 1))  # the schedule takes back control
    assert arming.state("crossing").state == "armed"
    assert arming.state("crossing").why == "schedule"


def test_untrusted_clock_uses_the_configured_state(tmp_path):
    clock = FakeTime(at(2026, 11, 23, 15), trusted=False)
    assert make(tmp_path, clock, **SCHEDULED).state("crossing").state == "armed"
    other = make(tmp_path / "b", clock, untrusted_clock="disarmed", **SCHEDULED)
    assert other.state("crossing").why == "untrusted_clock"
    assert other.state("crossing").state == "disarmed"


def test_24h_zone_cannot_be_disarmed_and_errors_change_nothing(tmp_path):
    clock = FakeTime(at(2026, 11, 23, 15))
    arming = make(tmp_path, clock, **SCHEDULED)
    before = {z: s.state for z, s in arming.states().items()}
    with pytest.raises(ArmingError) as info:
        arming.set(["yard", "cabinet"], "disarmed", by="x")
    assert info.value.code == "zone_is_24h"
    with pytest.raises(ArmingError) as info:
        arming.set(["yard", "nowhere"], "disarmed", by="x")
    assert info.value.code == "unknown_zone"
    assert {z: s.state for z, s in arming.states().items()} == before
    outcome = arming.set("all", "disarmed", by="y")
    assert outcome["cabinet"] == {"state": "armed", "mode": "24h", "why": "24h", "changed": False}
    assert arming.state("yard").state == "disarmed"


def test_overrides_survive_a_restart_and_a_damaged_file_is_set_aside(tmp_path):
    clock = FakeTime(at(2026, 11, 23, 15))
    make(tmp_path, clock).set(["yard"], "disarmed", by="cmd-9")
    again = make(tmp_path, clock)
    assert again.state("yard").state == "disarmed" and again.state("yard").why == "override"
    assert json.loads((tmp_path / "arming.json").read_text())["overrides"]["yard"]["by"] == "cmd-9"
    (tmp_path / "arming.json").write_text("{not json")
    fresh = make(tmp_path, clock)
    assert fresh.set_aside is not None and fresh.set_aside.exists()
    assert fresh.state("yard").state == "armed"


def test_reconfigure_drops_overrides_of_changed_zones(tmp_path):
    clock = FakeTime(at(2026, 11, 23, 15))
    arming = make(tmp_path, clock)
    arming.set(["yard", "crossing"], "disarmed", by="c")
    arming.reconfigure(
        ArmingConfig.model_validate({"zones": [{"zone": "yard", "mode": "disarmed"}]}),
        ["crossing", "cabinet", "yard"],
    )
    assert arming.state("yard").why == "mode"
    assert arming.state("crossing").why == "override"


def test_schedule_transitions_are_reported_as_status_arming(tmp_path):
    from linkage_helpers import wait_until
    from sinks import ListSink

    from shaobing.agent.config import LinkageConfig, ZoneConfig
    from shaobing.agent.linkage import LinkageSink

    clock = FakeTime(at(2026, 11, 23, 19, 59))
    arming = make(tmp_path, clock, **SCHEDULED)
    inner = ListSink()
    zones = [ZoneConfig(id=z) for z in ("crossing", "cabinet", "yard")]
    sink = LinkageSink(inner, LinkageConfig(), zones, arming, None, None, watch_s=0.02)
    sink.start()
    try:
        clock.set(at(2026, 11, 23, 20, 0))
        assert wait_until(lambda: inner.of_type("status.arming"), 5)
    finally:
        sink.stop()
    (event,) = inner.of_type("status.arming")
    assert event.zone == "crossing"
    assert event.data == {
        "state": "armed",
        "mode": "schedule",
        "why": "schedule",
        "by": "schedule",
        "command_id": None,
    }


def test_command_key_from_file_or_environment(tmp_path, monkeypatch):
    from shaobing.agent.config import ControlConfig
    from shaobing.agent.security_policy import load_hmac_key
    from shaobing.core.signing import KeyFileError

    key_file = tmp_path / "command.key"
    key_file.write_bytes(b"  s3cret\n")
    key_file.chmod(0o600)
    assert load_hmac_key(ControlConfig(key_file=key_file)) == b"s3cret"
    monkeypatch.setenv("SB_KEY", "from-env")
    both = ControlConfig(key_file=key_file, key_env="SB_KEY")
    assert load_hmac_key(both) == b"from-env"
    with pytest.raises(KeyFileError, match=r"absent\.key"):
        load_hmac_key(ControlConfig(key_file=tmp_path / "absent.key"))


def test_camera_track_events_follow_their_start(tmp_path):
    """A muted track start mutes its update/end; a reported one lets them through."""
    from sinks import ListSink

    from shaobing.agent.config import LinkageConfig, ZoneConfig
    from shaobing.agent.linkage import LinkageSink
    from shaobing.core.events import Source

    class IdSink(ListSink):
        def emit(self, *args, **kwargs):
            event = super().emit(*args, **kwargs)
            event.id = f"ev-{len(self.events)}"  # the Recorder's events carry a ULID
            return event

    clock = FakeTime(at(2026, 11, 23, 15))  # crossing: schedule, disarmed at 15:00
    arming = make(tmp_path, clock, **SCHEDULED)
    inner = IdSink()
    zones = [ZoneConfig(id=z) for z in ("crossing", "cabinet", "yard")]
    sink = LinkageSink(inner, LinkageConfig(suppressed="drop"), zones, arming, None, None)
    cam = Source(kind="camera", id="cam-1")

    def track(zone: str, track_id: int) -> None:
        for phase in ("start", "update", "end"):
            sink.emit(
                "alarm.intrusion", cam, zone=zone, data={"phase": phase, "track_id": track_id}
            )

    track("crossing", 1)  # disarmed: the whole track is suppressed
    track("yard", 2)  # armed: the whole track passes
    assert [(e.zone, e.data["track_id"], e.data["phase"]) for e in inner.events] == [
        ("yard", 2, "start"),
        ("yard", 2, "update"),
        ("yard", 2, "end"),
    ]
    track("yard", 3)  # a second track within the cooldown is folded with its update/end
    assert len(inner.events) == 3
    sink.stop()
