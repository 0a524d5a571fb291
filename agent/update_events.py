"""``status.update``: how model and settings updates alike report progress and verdicts."""

from __future__ import annotations

from typing import Any

from shaobing.core.events import EventSink, Severity, Source

SOURCE = Source(kind="agent", id="updates")
# Phases the county should look at: nothing changed, or a change was undone.
MINOR_PHASES = frozenset({"refused", "rolled_back"})


def emit_update(sink: EventSink, body: dict[str, Any]) -> None:
    severity = Severity.MINOR if body.get("phase") in MINOR_PHASES else None
    sink.emit("status.update", SOURCE, data=body, severity=severity)
