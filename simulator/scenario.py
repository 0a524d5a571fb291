"""Scripted things happening at a post, for the demo."""

from __future__ import annotations

import threading
from collections.abc import Callable

from shaobing.simulator.gpio import VirtualWiring


def village_scenario(
    wiring: VirtualWiring, stop: threading.Event, say: Callable[[str], None] = print
) -> None:
    """Panic button, PIR and cabinet door in a loop, a few seconds apart."""
    inputs = wiring.inputs.values()
    steps = [(i.id, i.kind) for i in inputs if i.kind in ("panic", "pir", "door")]
    while not stop.is_set():
        for input_id, kind in steps:
            if stop.wait(3):
                return
            say(f"[sim]    {kind} {input_id}: triggered")
            wiring.press(input_id, hold_s=1.0)
