"""Which set_config patches only the box may make (the e2e refusal is in test_control.py)."""

from __future__ import annotations

from shaobing.agent.config_commands import merge_patch
from shaobing.agent.protected_settings import protected_paths

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
