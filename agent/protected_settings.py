"""Settings a remote ``set_config`` may not change (issue 12 item 3).

Who the box talks to and how it checks commands (``mqtt``, ``control``),
where it keeps its evidence (``storage``), who it is (``device``, ``site``)
and who may open its console (``console``) change only on the box: by
provisioning or by editing the file.
Otherwise one stolen platform credential could re-point a whole county's
posts at another broker or switch off signature checks. Alarm suppression
is bounded the same way: no cooldown above ``COOLDOWN_CAP_S`` and no
``linkage.suppressed: drop`` by command.
"""

from __future__ import annotations

from typing import Any

PROTECTED_SECTIONS = ("mqtt", "control", "storage", "device", "site", "console")

# Longest linkage cooldown (global or per rule) a command may set, seconds:
# longer means an intruder's second crossing goes unannounced for too long.
COOLDOWN_CAP_S = 600.0


def _leaves(patch: Any, prefix: str) -> list[str]:
    if not isinstance(patch, dict) or not patch:
        return [prefix]
    return [leaf for key, value in patch.items() for leaf in _leaves(value, f"{prefix}.{key}")]


def _suppressed(data: dict[str, Any]) -> Any:
    return (data.get("linkage") or {}).get("suppressed")


def _cooldowns(data: dict[str, Any]) -> dict[str, Any]:
    linkage = data.get("linkage") or {}
    found = {"linkage.cooldown_s": linkage.get("cooldown_s")}
    for i, rule in enumerate(linkage.get("rules") or []):
        if isinstance(rule, dict):
            found[f"linkage.rules.{i}.cooldown_s"] = rule.get("cooldown_s")
    return found


def protected_paths(
    patch: dict[str, Any], merged: dict[str, Any], running: dict[str, Any]
) -> list[str]:
    """The dotted paths of ``patch`` that only the box may change, sorted; [] if none.

    ``merged`` is the config the patch would make and ``running`` the current
    one (both as JSON data), so a cooldown already above the cap locally is
    not held against an unrelated change.
    """
    paths = [
        leaf
        for section in PROTECTED_SECTIONS
        if section in patch
        for leaf in _leaves(patch[section], section)
    ]
    if _suppressed(merged) == "drop" != _suppressed(running):
        paths.append("linkage.suppressed")  # dropping hides suppressed alarms from the county
    before = _cooldowns(running)
    for path, value in _cooldowns(merged).items():
        too_long = isinstance(value, int | float) and value > COOLDOWN_CAP_S
        if too_long and value != before.get(path):
            paths.append(path)
    return sorted(paths)
