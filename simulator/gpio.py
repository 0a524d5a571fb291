"""Virtual wiring for the GPIO inputs: closes and opens contacts on MockFactory pins.

It acts on the pins exactly as a real contact does on the Pi header, so the
driver under test is the production ``drivers.gpio`` code, unmodified.
"""

from __future__ import annotations

import time

from gpiozero.pins.mock import MockFactory

from shaobing.drivers.gpio_config import InputConfig, OutputConfig


class VirtualWiring:
    def __init__(
        self, factory: MockFactory, inputs: list[InputConfig], outputs: list[OutputConfig] = ()
    ):
        self.factory = factory
        self.inputs = {i.id: i for i in inputs}
        self.outputs = {o.id: o for o in outputs}

    def _contact(self, input_id: str, closed: bool) -> None:
        cfg = self.inputs[input_id]
        pin = self.factory.pin(cfg.pin)
        # Pull-up wiring switches the line to ground; pull-down to 3V3.
        low = closed if cfg.pull == "up" else not closed
        pin.drive_low() if low else pin.drive_high()

    def rest(self) -> None:
        """Every sensor in its normal state: NO contacts open, NC loops closed."""
        for cfg in self.inputs.values():
            self._contact(cfg.id, closed=cfg.contact == "NC")

    def trigger(self, input_id: str) -> None:
        self._contact(input_id, closed=self.inputs[input_id].contact == "NO")

    def restore(self, input_id: str) -> None:
        self._contact(input_id, closed=self.inputs[input_id].contact == "NC")

    def press(self, input_id: str, hold_s: float = 0.3) -> None:
        """Trigger then restore, held longer than the input's debounce time."""
        self.trigger(input_id)
        time.sleep(max(hold_s, self.inputs[input_id].bounce_ms / 1000 * 2))
        self.restore(input_id)

    def cut_wire(self, input_id: str) -> None:
        """A cut cable reads as an open contact whatever the sensor does."""
        self._contact(input_id, closed=False)

    def output_on(self, output_id: str) -> bool:
        cfg = self.outputs[output_id]
        return self.factory.pin(cfg.pin).state == (1 if cfg.active_high else 0)
