"""Which set_config patches only the box may make (the e2e refusal is in test_control.py)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from shaobing.agent.arming import Arming
from shaobing.agent.config import ArmingConfig
from shaobing.agent.config_commands import merge_patch
from shaobing.agent.protected_settings import disarmed_24h_zones, protected_paths

RUNNING = {
    "device": {"id": "post-1"},
    "linkage": {"cooldown_s": 900, "rules": [{"zone": "crossing", "cooldown_s": 30}]},
}


def paths(patch: dict) -> list[str]:
    return protected_paths(patch, merge_patch(RUNNING, patch), RUNNING)


def test_rule_cooldown_above_the_cap_is_protected():
    rules = [{"zone": "crossing", "cooldown_s": 601}]
    assert paths({"linkage": {"rules": rules}}) == ["linkage.rules.0.cooldown_s"]


def test_a_cap_already_exceeded_on_the_box_does_not_block_other_changes():
    assert paths({"linkage": {"rules": [{"zone": "crossing", "cooldown_s": 60}]}}) == []
    assert paths({"linkage": {"cooldown_s": 1200}}) == ["linkage.cooldown_s"]


def test_deleting_a_protected_section_names_it():
    assert paths({"device": None, "mqtt": {}}) == ["device", "mqtt"]


# ---- 24-hour zones (issue 12 item 3): a patch must not disarm one -------------
ZONES = {
    "zones": [{"id": "crossing", "name": "x"}, {"id": "cabinet", "name": "y"}],
    "arming": {
        "zones": [{"zone": "crossing", "mode": "armed"}, {"zone": "cabinet", "mode": "24h"}]
    },
}
ALL_24H = {"zones": ZONES["zones"], "arming": {"default_mode": "24h"}}


def zone_paths(patch: dict, running: dict = ZONES) -> list[str]:
    return protected_paths(patch, merge_patch(running, patch), running)


def test_making_a_24h_zone_anything_else_is_protected():
    for mode in ("armed", "disarmed"):
        entries = [{"zone": "crossing", "mode": "armed"}, {"zone": "cabinet", "mode": mode}]
        assert zone_paths({"arming": {"zones": entries}}) == ["arming.zones.1.mode"]
    sched = {
        "zone": "cabinet",
        "mode": "schedule",
        "schedules": [{"start": "20:00", "end": "06:00"}],
    }
    assert zone_paths({"arming": {"zones": [sched]}}) == ["arming.zones.0.mode"]


def test_dropping_a_24h_zone_entry_or_the_zone_is_protected():
    assert zone_paths({"arming": {"zones": [{"zone": "crossing", "mode": "armed"}]}}) == [
        "arming.zones"
    ]
    assert zone_paths({"arming": None}) == ["arming.zones"]
    assert zone_paths({"zones": [{"id": "crossing", "name": "x"}]}) == ["zones"]


def test_changing_a_24h_default_is_protected():
    assert zone_paths({"arming": {"default_mode": "armed"}}, ALL_24H) == ["arming.default_mode"]
    assert zone_paths({"arming": {"default_mode": None}}, ALL_24H) == ["arming.default_mode"]
    listed = {"arming": {"zones": [{"zone": "cabinet", "mode": "disarmed"}]}}
    assert zone_paths(listed, ALL_24H) == ["arming.zones.0.mode"]


def test_arming_changes_that_keep_24h_zones_armed_are_allowed():
    entries = [{"zone": "crossing", "mode": "disarmed"}, {"zone": "cabinet", "mode": "24h"}]
    assert zone_paths({"arming": {"zones": entries}}) == []
    assert zone_paths({"arming": {"default_mode": "disarmed"}}) == []  # cabinet listed as 24h
    assert zone_paths({"arming": {"zones": [{"zone": "crossing", "mode": "24h"}]}}, ALL_24H) == []
    # Making a zone 24h is arming it: fine.
    assert zone_paths({"arming": {"zones": [{"zone": "cabinet", "mode": "24h"}]}}) == []
    # Malformed shapes are left to validation (invalid_config), not guessed at.
    assert zone_paths({"zones": 5}) == []


def test_alarm_types_cannot_leave_the_always_lists():
    assert zone_paths({"arming": {"always_armed": []}}) == ["arming.always_armed"]
    assert zone_paths({"arming": {"always_reported": []}}) == ["arming.always_reported"]
    both = {"arming": {"always_armed": ["alarm.panic"], "always_reported": []}}
    running = {
        **ZONES,
        "arming": {**ZONES["arming"], "always_armed": ["alarm.panic", "alarm.duress"]},
    }
    assert zone_paths(both, running) == ["arming.always_armed", "arming.always_reported"]
    # Adding, or moving tamper from reported to armed, only widens what is reported.
    widened = {"always_armed": ["alarm.panic", "alarm.tamper", "alarm.fire"], "always_reported": []}
    assert zone_paths({"arming": widened}) == []
    assert zone_paths({"arming": {"always_reported": ["alarm.tamper", "alarm.fire"]}}) == []


# ---- property: the 24h rule agrees with agent/arming.py, whatever the patch ----
MODES = ("armed", "disarmed", "24h", "schedule")
NIGHT = [{"start": "20:00", "end": "06:00"}]


def _entry(zone: str, mode: str) -> dict:
    return {"zone": zone, "mode": mode, **({"schedules": NIGHT} if mode == "schedule" else {})}


_arming = st.fixed_dictionaries(
    {},
    optional={
        "default_mode": st.sampled_from(("armed", "disarmed", "24h")),
        "zones": st.lists(
            st.builds(_entry, st.sampled_from(("crossing", "cabinet")), st.sampled_from(MODES)),
            max_size=3,
        ),
    },
)
_zone_lists = st.lists(st.sampled_from(("crossing", "cabinet", "yard")), unique=True, max_size=3)


def _always_armed_zones(data: dict, tmp: Path) -> set[str]:
    """The ground truth: which zones agent/arming.py itself holds armed as 24h."""
    arming = Arming(
        ArmingConfig(**data.get("arming", {})),
        [z["id"] for z in data.get("zones", [])],
        tmp / "arming.json",
        trusted=lambda: True,
    )
    return {zone for zone, state in arming.states().items() if state.why == "24h"}


@settings(max_examples=150, deadline=None)
@given(
    running_arming=_arming,
    running_zones=_zone_lists,
    patch_arming=st.one_of(st.none(), _arming),
    patch_zones=st.one_of(st.just(False), _zone_lists),
)
def test_the_24h_rule_matches_the_arming_module(
    tmp_path_factory, running_arming, running_zones, patch_arming, patch_zones
):
    tmp = tmp_path_factory.mktemp("arming")
    running = {"zones": [{"id": z} for z in running_zones], "arming": running_arming}
    patch: dict = {"arming": patch_arming}
    if patch_zones is not False:
        patch["zones"] = [{"id": z} for z in patch_zones]
    merged = merge_patch(running, patch)
    try:
        lost = _always_armed_zones(running, tmp) - _always_armed_zones(merged, tmp)
    except ValueError:  # pydantic: an arming section the agent would refuse anyway
        assume(False)
    refused = disarmed_24h_zones(merged, running)
    assert bool(lost) == bool(refused), (lost, refused)
    for zone in lost:
        assert any(repr(zone) in why for why in refused.values())
