"""The agent: builds every component from the config and wires the one-way flow

drivers -> Recorder (EventSink) -> Outbox (SQLite) -> Uplink (MQTT)
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from gpiozero.pins import Factory

from shaobing.agent.arming import Arming
from shaobing.agent.clock import Clock
from shaobing.agent.config import Config
from shaobing.agent.control import LIVE_SECTIONS, ControlChannel
from shaobing.agent.events import Source
from shaobing.agent.health import HealthReporter
from shaobing.agent.linkage import LinkageSink
from shaobing.agent.outbox import Outbox
from shaobing.agent.recorder import Recorder
from shaobing.agent.topics import Topics
from shaobing.agent.uplink import Uplink
from shaobing.agent.verification import VerificationWorker, Verifier
from shaobing.drivers.gpio import GpioInputs, GpioOutputs, make_pin_factory

log = logging.getLogger("shaobing.agent")

# `shaobing run` exits with this after a `restart` command; systemd's
# Restart=always (or RestartForceExitStatus=75) starts it again.
EXIT_RESTART = 75


def agent_version() -> str:
    try:
        return version("shaobing")
    except PackageNotFoundError:
        return "0+unknown"


class Agent:
    """Construct, then ``start()``; the simulator sets its wiring in between."""

    def __init__(
        self,
        config: Config,
        *,
        pin_factory: Factory | None = None,
        verifier: Verifier | None = None,
        config_path: Path | None = None,
    ):
        self.config = config
        self.started_at = time.monotonic()
        self.restart_requested = threading.Event()
        self._wake = threading.Event()
        self._stopped = False
        self.clock = Clock()
        self.outbox = Outbox(config.storage.path)
        self.recorder = Recorder(config, self.outbox, self.clock)
        self.topics = Topics(config.mqtt.topic_prefix, config.site.village_code, config.device.id)
        self.uplink = Uplink(
            config.mqtt, config.device.id, self.topics, self.outbox, self._identity
        )
        factory = pin_factory if pin_factory is not None else make_pin_factory(config.gpio)
        self.outputs = GpioOutputs(config.outputs, factory)
        state_dir = config.storage.path.parent
        self.arming = Arming(
            config.arming,
            [z.id for z in config.zones],
            state_dir / "arming.json",
            self.clock.trusted,
        )
        self.verification = VerificationWorker(self.recorder, verifier)
        # Drivers get the linkage sink; it commits through the recorder.
        self.sink = LinkageSink(
            self.recorder,
            config.linkage,
            config.zones,
            self.arming,
            self.outputs,
            self.verification,
        )
        self.control: ControlChannel | None = None
        if config.control.enabled:
            self.control = ControlChannel(
                config.control,
                self.topics,
                config.device.id,
                self.uplink,
                self,
                self.arming,
                self.sink,
                self.recorder,
                verifier,
                state_dir,
                config_path,
                v5=config.mqtt.protocol == "5",
            )
            self.uplink.subscribe(self.topics.commands, self.control.on_message)
        self.inputs = GpioInputs(config.inputs, self.sink, factory)
        self.health = HealthReporter(
            self.recorder, config.health.interval_s, config.storage.path.parent, self._sections
        )

    def identity(self) -> dict[str, Any]:
        return {**self._identity(), "uptime_s": round(time.monotonic() - self.started_at, 1)}

    def apply_config(self, new: Config) -> list[str]:
        """Take over the sections that can change while running; see control.LIVE_SECTIONS."""
        applied = [s for s in LIVE_SECTIONS if getattr(new, s) != getattr(self.config, s)]
        zone_ids = [z.id for z in self.config.zones]
        if "arming" in applied:
            self.arming.reconfigure(new.arming, zone_ids)
        if "linkage" in applied:
            self.sink.reconfigure(new.linkage, self.config.zones)
        if "control" in applied and self.control is not None:
            self.control.reconfigure(new.control)
        self.config = self.config.model_copy(update={s: getattr(new, s) for s in applied})
        return applied

    def request_restart(self) -> None:
        self.restart_requested.set()
        self._wake.set()

    def _identity(self) -> dict[str, Any]:
        return {
            "device": self.config.device.id,
            "village_code": self.config.site.village_code,
            "boot_id": self.clock.boot_id,
            "run": self.outbox.run,
            "version": agent_version(),
        }

    def _sections(self) -> dict[str, Any]:
        stats = self.uplink.stats
        return {
            "run": self.outbox.run,
            "outbox": self.outbox.depth(),
            "uplink": {
                "connected": self.uplink.connected.is_set(),
                "connects": stats.connects,
                "published": stats.published,
                "acked": stats.acked,
                "refused": stats.refused,
                "inflight": stats.inflight,
            },
            "drivers": {
                "gpio_inputs": self.inputs.state(),
                "gpio_outputs": self.outputs.state(),
            },
            "arming": {z: s.state for z, s in self.arming.states().items()},
            "linkage": asdict(self.sink.stats),
            "verification": asdict(self.verification.stats),
            "control": asdict(self.control.stats) if self.control else None,
        }

    def start(self) -> None:
        self.uplink.start()
        if self.outbox.recovered_from:
            self.recorder.emit(
                "fault.storage",
                Source(kind="agent", id="outbox"),
                data={
                    "reason": self.outbox.corruption,
                    "kept_as": str(self.outbox.recovered_from),
                },
            )
        if self.arming.set_aside:
            self.recorder.emit(
                "fault.storage",
                Source(kind="agent", id="arming"),
                data={"reason": "arm state file unreadable", "kept_as": str(self.arming.set_aside)},
            )
        self.verification.start()
        self.sink.start()
        if self.control is not None:
            self.control.start()
        self.inputs.start()
        self.health.start()
        log.info("agent started", extra={"fields": {"device": self.config.device.id}})

    def healthy(self) -> bool:
        return self.uplink.healthy()

    def stop(self) -> None:
        if self._stopped:
            return  # tests and signal handlers may both stop it
        self._stopped = True
        self.health.stop()
        self.inputs.close()
        if self.control is not None:
            self.control.stop()
        self.verification.stop()
        self.sink.stop()
        self.outputs.close()
        self.uplink.stop()
        self.outbox.close()
        log.info("agent stopped")

    def run_until_signalled(self) -> bool:
        """Returns True when a `restart` command, not a signal, ended the run."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self._wake.set())
        self.start()
        try:
            self._wake.wait()
        finally:
            self.stop()
        return self.restart_requested.is_set()
