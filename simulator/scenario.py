"""Scripted things happening at a post, for the demo."""

from __future__ import annotations

import threading
from collections.abc import Callable

from shaobing.simulator.gpio import VirtualWiring


def village_scenario(
    wiring: VirtualWiring, stop: threading.Event, say: Callable[[str], None] = print
) -> None:
    """PIR, panic button and cabinet door in a loop, a few seconds apart.

    The PIR goes first, while the demo camera's walker is in view, so its
    alarm is verified by the detector; later ones find an empty scene.
    """
    order = {"pir": 0, "panic": 1, "door": 2}
    inputs = sorted(wiring.inputs.values(), key=lambda i: order.get(i.kind, 9))
    steps = [(i.id, i.kind) for i in inputs if i.kind in order]
    first = True
    while not stop.is_set():
        for input_id, kind in steps:
            if stop.wait(0.8 if first else 3):
                return
            first = False
            say(f"[sim]    {kind} {input_id}: triggered")
            wiring.press(input_id, hold_s=1.0)
