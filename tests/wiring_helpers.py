"""Mock pins that stay wired: a sensor's level survives a device (re)opening the pin.

gpiozero's MockPin resets its level when a device sets the pull resistor; a
real contact does not care who opens the pin. The self-test opens each pin
afresh, so the tests need the real behaviour.
"""

from __future__ import annotations

from gpiozero.pins.mock import MockFactory, MockPin


class HeldPin(MockPin):
    _held: bool | None = None

    def drive_high(self):
        self._held = True
        super().drive_high()

    def drive_low(self):
        self._held = False
        super().drive_low()

    def _set_pull(self, value):
        held = self._held
        super()._set_pull(value)
        if held is not None:
            self._held = held
            self._change_state(held)


def wired_factory() -> MockFactory:
    return MockFactory(pin_class=HeldPin)
