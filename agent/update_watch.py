"""What model and settings updates share: ``status.update`` and the watch window's start count.

Both put a change on probation for ``updates.watch_s`` (agent/model_updates.py,
agent/settings_probation.py) and keep the window on disk
(agent/detection/model_store.py, agent/config_watch.py): each agent start within
it is counted, and ``updates.max_starts`` past the first mean a crash loop.
"""

from __future__ import annotations

from typing import Any

from shaobing.core.events import EventSink, Severity, Source

SOURCE = Source(kind="agent", id="updates")
# Phases the county should look at: nothing changed, or a change was undone.
MINOR_PHASES = frozenset({"refused", "rolled_back"})


def emit_update(sink: EventSink, body: dict[str, Any]) -> None:
    severity = Severity.MINOR if body.get("phase") in MINOR_PHASES else None
    sink.emit("status.update", SOURCE, data=body, severity=severity)


def count_start(watch: dict[str, Any], now: float) -> dict[str, Any] | None:
    """The watch with this start counted, or None when its window has run out."""
    if now >= watch["until"]:
        return None
    return {**watch, "starts": int(watch.get("starts", 0)) + 1}


def crash_loop(watch: dict[str, Any], max_starts: int) -> bool:
    """Too many starts within the window: the first start is the change's own."""
    return int(watch.get("starts", 0)) > max_starts
