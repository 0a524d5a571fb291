"""What counts as a settings change failing in service (docs/mqtt.md#settings-bundles).

A settings bundle is on probation for ``updates.watch_s`` (agent/config_watch.py).
Within that window the change fails in service when one of these appears that
was not there before the change (the *baseline*) and that the changed settings
can explain:

- ``fault.camera`` (down) on a camera whose settings changed or that is new;
- ``fault.device_offline`` on a Modbus detector or alarm host whose settings
  (or whose bus's) changed;
- ``alarm.tamper`` on a tamper input whose settings (or ``gpio``) changed: a
  loop that reads open right after its pin, contact or pull changed is wiring
  set wrong far more often than a burglar, and the old settings report a real
  one just as well;
- the detector not loading, or ``updates.max_faults`` inference steps failing
  in a row, after ``detector`` or ``cameras`` changed;
- a worker of a changed section no longer live (status.health ``workers``).

Anything else (an alarm host's own AC loss, a real intrusion, a camera nobody
touched) is the post's news, not the change's, and does not roll it back.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from shaobing.agent.conditions import Key, OpenCondition

# The workers a section's settings run in (agent/runtime.py, Agent._parts).
SECTION_WORKERS = {
    "cameras": ("inference",),
    "detector": ("inference",),
    "serial": ("serial",),
    "control": ("control",),
    "health": ("health",),
    "arming": ("arming-watch",),
    "linkage": ("arming-watch", "verification"),
    "updates": ("model-watch", "updates"),
}


def _changed_ids(old: list[Any], new: list[Any]) -> list[str]:
    before = {item.id: item for item in old}
    return sorted(item.id for item in new if before.get(item.id) != item)


def scope_of(old: Any, new: Any) -> dict[str, Any]:
    """What a change from config ``old`` to ``new`` may break, by section and id."""
    sections = [s for s in type(new).model_fields if getattr(old, s) != getattr(new, s)]
    changed_buses = set(_changed_ids(old.serial.buses, new.serial.buses))
    serial = set(_changed_ids(old.serial.modbus, new.serial.modbus))
    serial |= set(_changed_ids(old.serial.contact_id, new.serial.contact_id))
    serial |= {d.id for d in [*new.serial.modbus, *new.serial.contact_id] if d.bus in changed_buses}
    inputs = (
        [i.id for i in new.inputs] if old.gpio != new.gpio else _changed_ids(old.inputs, new.inputs)
    )
    return {
        "sections": sections,
        "cameras": _changed_ids(old.cameras, new.cameras),
        "serial": sorted(serial),
        "inputs": [i for i in inputs if any(c.id == i and c.kind == "tamper" for c in new.inputs)],
        "detector": "detector" in sections or "cameras" in sections,
        "workers": sorted({w for s in sections for w in SECTION_WORKERS.get(s, ())}),
    }


def key_text(key: Key) -> str:
    return (
        f"{key.condition} on {key.source_kind}:{key.source_id}"
        + (f" zone {key.zone}" if key.zone else "")
        + (f" channel {key.channel}" if key.channel else "")
    )


def open_faults(
    scope: dict[str, Any],
    open_conditions: Iterable[OpenCondition],
    failing_workers: Iterable[str],
    detector_fault: str | None,
) -> dict[str, str]:
    """Every fault the changed settings can explain: a stable id (the baseline's
    form) -> what to tell the county."""
    cameras, serial = scope.get("cameras", ()), scope.get("serial", ())
    inputs, workers = scope.get("inputs", ()), scope.get("workers", ())
    out: dict[str, str] = {}
    for c in open_conditions:
        k = c.key
        if (
            ((k.source_kind, k.condition) == ("camera", "fault.camera") and k.source_id in cameras)
            or (
                k.source_kind in ("modbus", "contact_id")
                and k.condition == "fault.device_offline"
                and k.source_id in serial
            )
            or ((k.source_kind, k.condition) == ("gpio", "alarm.tamper") and k.source_id in inputs)
        ):
            out[key_text(k)] = key_text(k)
    for w in failing_workers:
        if w in workers:
            out[f"worker {w}"] = f"worker {w} not live"
    if detector_fault and scope.get("detector"):
        out["detector"] = f"detector fault: {detector_fault}"
    return out


def all_faults(
    open_conditions: Iterable[OpenCondition],
    failing_workers: Iterable[str],
    detector_fault: str | None,
) -> list[str]:
    """Every fault open now, in ``open_faults``' ids: the baseline taken before a change
    (before it, what the change will reach is not known yet)."""
    ids = [key_text(c.key) for c in open_conditions]
    ids += [f"worker {w}" for w in failing_workers]
    return ids + (["detector"] if detector_fault else [])


def new_faults(now: dict[str, str], baseline: Iterable[str]) -> list[str]:
    """What to tell of the faults in ``now`` that were not open before the change."""
    before = set(baseline)
    return [text for fault, text in now.items() if fault not in before]
