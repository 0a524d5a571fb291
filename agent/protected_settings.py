"""Settings a remote ``set_config`` may not change (issue 12 item 3).

Who the box talks to and how it checks commands (``mqtt``, ``control``),
where it keeps its evidence (``storage``), who it is (``device``, ``site``)
and who may open its console (``console``) change only on the box: by
provisioning or by editing the file.
Otherwise one stolen platform credential could re-point a whole county's
posts at another broker or switch off signature checks. Alarm suppression
is bounded the same way: no cooldown above ``COOLDOWN_CAP_S``, no
``linkage.suppressed: drop`` by command, and no 24-hour zone made anything
else (its mode changed, its ``arming`` entry or the ``24h`` default it took
removed, or the zone itself removed): a 24-hour zone (a cabinet's door and
tamper loop) must stay armed whatever a platform operator does. Likewise no
alarm type leaves ``arming.always_armed`` or ``always_reported``.
"""

from __future__ import annotations

from typing import Any

from shaobing.agent.config import ArmingConfig

PROTECTED = "protected: change it on the box"

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


def _arming_modes(data: dict[str, Any]) -> dict[str, tuple[Any, int | None]] | None:
    """Each zone's arming mode and its index in ``arming.zones`` (None: the default mode),
    resolved as agent/arming.py does (a later entry for the same zone wins); None when
    the data is too malformed to tell (validation then refuses it)."""
    zones, arming = data.get("zones") or [], data.get("arming") or {}
    if not isinstance(zones, list) or not isinstance(arming, dict):
        return None
    entries = arming.get("zones") or []
    if not isinstance(entries, list):
        return None
    listed = {
        item.get("zone"): (item.get("mode"), i)
        for i, item in enumerate(entries)
        if isinstance(item, dict)
    }
    default = arming.get("default_mode", ArmingConfig.model_fields["default_mode"].default)
    return {
        zone["id"]: listed.get(zone["id"], (default, None))
        for zone in zones
        if isinstance(zone, dict) and isinstance(zone.get("id"), str)
    }


def disarmed_24h_zones(merged: dict[str, Any], running: dict[str, Any]) -> dict[str, str]:
    """Paths whose change would make a 24-hour zone of ``running`` anything else, with why."""
    before, after = _arming_modes(running), _arming_modes(merged)
    if before is None or after is None:
        return {}
    found: dict[str, list[str]] = {}
    for zone, (mode, index_before) in before.items():
        if mode != "24h":
            continue
        if zone not in after:
            found.setdefault("zones", []).append(f"it removes 24-hour zone {zone!r}")
            continue
        new_mode, index = after[zone]
        if new_mode == "24h":
            continue
        if index is not None:
            path = f"arming.zones.{index}.mode"
        else:  # the zone's own entry went, or the 24h default it took changed
            path = "arming.zones" if index_before is not None else "arming.default_mode"
        found.setdefault(path, []).append(
            f"24-hour zone {zone!r} would become {new_mode!r}: it cannot be disarmed remotely"
        )
    return {path: "; ".join(why) for path, why in found.items()}


def _always(data: dict[str, Any], field: str) -> set[str]:
    arming = data.get("arming") or {}
    value = arming.get(field, ArmingConfig.model_fields[field].default_factory())
    return {v for v in value if isinstance(v, str)} if isinstance(value, list) else set()


def narrowed_always_lists(merged: dict[str, Any], running: dict[str, Any]) -> dict[str, str]:
    """``arming.always_armed`` / ``always_reported`` losing an alarm type: that type would
    go unlinked (or unreported) in a disarmed zone. Moving a type from reported to armed
    widens nothing and is allowed."""
    found: dict[str, str] = {}
    armed_before, armed_after = _always(running, "always_armed"), _always(merged, "always_armed")
    if lost_armed := armed_before - armed_after:
        found["arming.always_armed"] = f"{PROTECTED}: it would drop {', '.join(sorted(lost_armed))}"
    reported_before = armed_before | _always(running, "always_reported")
    reported_after = armed_after | _always(merged, "always_reported")
    if lost := sorted(reported_before - reported_after - lost_armed):
        found["arming.always_reported"] = f"{PROTECTED}: it would drop {', '.join(lost)}"
    return found


def protected_changes(
    patch: dict[str, Any], merged: dict[str, Any], running: dict[str, Any]
) -> dict[str, str]:
    """The dotted paths of ``patch`` that only the box may change, each with why; {} if none.

    ``merged`` is the config the patch would make and ``running`` the current
    one (both as JSON data), so a cooldown already above the cap locally is
    not held against an unrelated change.
    """
    found = {
        leaf: PROTECTED
        for section in PROTECTED_SECTIONS
        if section in patch
        for leaf in _leaves(patch[section], section)
    }
    if _suppressed(merged) == "drop" != _suppressed(running):
        found["linkage.suppressed"] = PROTECTED  # dropping hides suppressed alarms
    before = _cooldowns(running)
    for path, value in _cooldowns(merged).items():
        too_long = isinstance(value, int | float) and value > COOLDOWN_CAP_S
        if too_long and value != before.get(path):
            found[path] = f"{PROTECTED} (above {COOLDOWN_CAP_S:g} s)"
    found.update(disarmed_24h_zones(merged, running))
    found.update(narrowed_always_lists(merged, running))
    return dict(sorted(found.items()))


def protected_paths(
    patch: dict[str, Any], merged: dict[str, Any], running: dict[str, Any]
) -> list[str]:
    """The dotted paths of ``patch`` that only the box may change, sorted; [] if none."""
    return list(protected_changes(patch, merged, running))
