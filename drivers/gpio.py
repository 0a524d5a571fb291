"""GPIO alarm inputs and outputs through gpiozero.

The same code runs on a Pi (lgpio pin factory) and in the simulator
(gpiozero's MockFactory): the factory is passed in, never set globally.

A gpiozero input device is "active" when its contact is closed (pull-up:
contact to ground; pull-down: contact to 3V3). Whether closed means alarm
depends on the contact type: NO sensors close on alarm, NC loops (tamper,
most PIR relays) open on alarm, which also catches a cut wire.
"""

from __future__ import annotations

import logging
import re
import threading
import warnings
from typing import Any

from gpiozero import Device, DigitalInputDevice, DigitalOutputDevice
from gpiozero.exc import BadPinFactory
from gpiozero.pins import Factory

from shaobing.core.events import EventSink, Source, opened_before
from shaobing.core.i18n import N_
from shaobing.drivers.gpio_config import GpioConfig, InputConfig, OutputConfig

log = logging.getLogger("shaobing.gpio")

EVENT_TYPE = {
    "panic": "alarm.panic",
    "pir": "alarm.intrusion",
    "door": "alarm.intrusion",
    "tamper": "alarm.tamper",
    # The local acknowledge key (GB 50394); the linkage turns it into status.acknowledge.
    "reset": "status.reset",
}


def make_pin_factory(config: GpioConfig, pins_used: bool = True) -> Factory | None:
    """The backend's factory; for ``auto`` gpiozero's own pick (lgpio on a Pi 5 / Bookworm),
    or None when no pin is used (a laptop without GPIO runs cameras and serial devices)."""
    if config.backend == "auto":
        return default_pin_factory() if pins_used else None
    if config.backend == "mock":
        from gpiozero.pins.mock import MockFactory

        return MockFactory()
    if config.backend == "lgpio":
        from gpiozero.pins.lgpio import LGPIOFactory

        return LGPIOFactory()
    if config.backend == "rpigpio":
        from gpiozero.pins.rpigpio import RPiGPIOFactory

        return RPiGPIOFactory()
    from gpiozero.pins.native import NativeFactory

    return NativeFactory()


# What to do when no GPIO library loads: said by `shaobing run` and the provisioning self-test.
NO_PIN_FACTORY = N_(
    "no usable GPIO library for gpio.backend '{backend}' ({reason}): on a Raspberry Pi install "
    "it with `pip install 'shaobing[pi]'` (lgpio; Pi 5 needs it) or `sudo apt install "
    "python3-lgpio`, then start again"
)
TRIED = N_("tried {libraries}; none loads here")
_FALLBACK = re.compile(r"^Falling back from (\w+)")


def default_pin_factory() -> Factory:
    """gpiozero's default pick, its fallback warnings kept off the installer's terminal.

    gpiozero tries lgpio, RPi.GPIO, pigpio and native in turn and warns about each
    library it could not load; printed, those are four lines of raw library text
    in front of the self-test table or the daemon's one-line error. Here they are
    logged when one library loads after all, and named in the BadPinFactory when none does.
    """
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        try:
            factory = Device._default_pin_factory()  # gpiozero's own order and env override
        except BadPinFactory as exc:
            factory, refusal = None, str(exc)
    if factory is None:
        tried = [m.group(1) for w in seen if (m := _FALLBACK.match(str(w.message)))]
        raise BadPinFactory(TRIED.format(libraries=", ".join(tried)) if tried else refusal)
    for w in seen:
        log.warning("GPIO library fallback", extra={"fields": {"reason": str(w.message)}})
    return factory


class GpioInputs:
    def __init__(self, inputs: list[InputConfig], sink: EventSink, factory: Factory | None):
        self._sink = sink
        self._lock = threading.Lock()
        self._alarm: dict[str, bool] = {}
        self._devices: dict[str, tuple[InputConfig, DigitalInputDevice]] = {}
        for cfg in inputs:
            device = DigitalInputDevice(
                cfg.pin,
                pull_up=cfg.pull == "up",
                bounce_time=cfg.bounce_ms / 1000 or None,
                pin_factory=factory,
            )
            self._devices[cfg.id] = (cfg, device)

    def start(self) -> None:
        """Reconcile the first reading (an open tamper loop at boot is reported, a restore
        closes an alarm left open by an earlier run), then follow edges."""
        for cfg, device in self._devices.values():
            device.when_activated = lambda _d, c=cfg: self._changed(c)
            device.when_deactivated = lambda _d, c=cfg: self._changed(c)
            self._changed(cfg, initial=True)

    def _in_alarm(self, cfg: InputConfig) -> bool:
        closed = self._devices[cfg.id][1].is_active
        return closed if cfg.contact == "NO" else not closed

    def _changed(self, cfg: InputConfig, initial: bool = False) -> None:
        with self._lock:  # gpiozero may call from several pin threads
            alarm = self._in_alarm(cfg)
            previous = self._alarm.get(cfg.id)
            self._alarm[cfg.id] = alarm
        if previous == alarm:
            return
        source = Source(kind="gpio", id=cfg.id)
        # The first reading reconciles with the conditions left open by an earlier
        # run: one still in alarm is not news; one now normal gets its restore.
        if initial and alarm == opened_before(self._sink, source, cfg.zone, EVENT_TYPE[cfg.kind]):
            return
        # A restore has its own type (".restore" suffix) so that subscribers to
        # event/alarm/+ see alarms only, and restores sort after their alarm.
        self._sink.emit(
            EVENT_TYPE[cfg.kind] + ("" if alarm else ".restore"),
            source,
            zone=cfg.zone,
            severity=None if alarm else "info",
            data={
                "state": "alarm" if alarm else "restore",
                "sensor": cfg.kind,
                "pin": cfg.pin,
                "contact": cfg.contact,
                "at_start": initial,
            },
        )

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {i: ("alarm" if a else "normal") for i, a in self._alarm.items()}

    def close(self) -> None:
        for _cfg, device in self._devices.values():
            device.close()


class GpioOutputs:
    def __init__(self, outputs: list[OutputConfig], factory: Factory | None):
        self._devices = {
            cfg.id: DigitalOutputDevice(
                cfg.pin, active_high=cfg.active_high, initial_value=False, pin_factory=factory
            )
            for cfg in outputs
        }

    def set(self, output_id: str, on: bool) -> None:
        device = self._devices[output_id]
        device.on() if on else device.off()

    def blink(self, output_id: str, on_s: float, off_s: float, n: int) -> None:
        """``n`` cycles of on/off, timed by gpiozero's background thread; ends off.

        A new pattern on the same output replaces the running one.
        """
        self._devices[output_id].blink(on_time=on_s, off_time=off_s, n=n, background=True)

    def state(self) -> dict[str, Any]:
        return {i: ("on" if d.is_active else "off") for i, d in self._devices.items()}

    def close(self) -> None:
        for device in self._devices.values():
            device.close()
