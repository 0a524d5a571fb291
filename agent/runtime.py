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
from typing import TYPE_CHECKING, Any

from gpiozero.pins import Factory

from shaobing.agent.arming import Arming
from shaobing.agent.config import Config, ZoneConfig
from shaobing.agent.config_commands import LIVE_SECTIONS, ConfigEditor
from shaobing.agent.config_watch import ConfigWatch
from shaobing.agent.control import ControlChannel, ControlDeps
from shaobing.agent.detection.config import cameras_change_live
from shaobing.agent.health import HealthReporter
from shaobing.agent.linkage import LinkageSink
from shaobing.agent.sdnotify import Notifier
from shaobing.agent.security_policy import insecure_settings, warn_at_start
from shaobing.agent.settings_probation import SettingsProbation
from shaobing.agent.spine import build_spine
from shaobing.agent.status_file import certificate_expiry, status_path, write_status
from shaobing.agent.verification import VerificationWorker, Verifier
from shaobing.core.events import Source
from shaobing.core.watchdog import Liveness
from shaobing.core.worker import Component
from shaobing.drivers.gpio import GpioInputs, GpioOutputs, make_pin_factory
from shaobing.drivers.serial_runtime import SerialDrivers

if TYPE_CHECKING:  # OpenCV loads only on posts with cameras
    from shaobing.drivers.camera import SourceSchemes

log = logging.getLogger("shaobing.agent")

# `shaobing run` exits with this after a `restart` command; systemd's
# Restart=always (or RestartForceExitStatus=75) starts it again.
EXIT_RESTART = 75


def agent_version() -> str:
    try:
        return version("shaobing")
    except PackageNotFoundError:
        return "0+unknown"


def zones_with_cameras(config: Config) -> list[ZoneConfig]:
    """Zones whose ``cameras`` default to the enabled cameras that guard them (cameras[].zones)."""
    seen_by: dict[str, list[str]] = {}
    for cam in config.cameras:
        if cam.enabled:
            for zone in cam.zones:
                seen_by.setdefault(zone.id, []).append(cam.id)
    return [
        z if z.cameras else z.model_copy(update={"cameras": seen_by.get(z.id, [])})
        for z in config.zones
    ]


class Agent:
    """Construct, then ``start()``; the simulator sets its wiring in between."""

    def __init__(
        self,
        config: Config,
        *,
        pin_factory: Factory | None = None,
        verifier: Verifier | None = None,
        config_path: Path | None = None,
        camera_schemes: SourceSchemes | None = None,
    ):
        self.config = config
        self._config_path = config_path
        self.started_at = time.monotonic()
        self.restart_requested = threading.Event()
        self._wake = threading.Event()
        self._stopped = False
        # Every worker registers here; the systemd watchdog is fed only while all pass.
        self.liveness = Liveness()
        spine = build_spine(config, agent_version())
        self.clock, self.outbox, self.recorder = spine.clock, spine.outbox, spine.recorder
        self.topics, self.uplink, self._identity = spine.topics, spine.uplink, spine.identity
        self.clock.on_sync(self._clock_synchronised)
        factory = (
            pin_factory
            if pin_factory is not None
            else make_pin_factory(config.gpio, pins_used=bool(config.inputs or config.outputs))
        )
        self.outputs = GpioOutputs(config.outputs, factory)
        state_dir = config.storage.path.parent
        self.arming = Arming(
            config.arming,
            [z.id for z in config.zones],
            state_dir / "arming.json",
            self.clock.trusted,
        )
        self.verification = VerificationWorker(self.recorder, verifier, flush=self.outbox.flush)
        # Every driver gets the linkage sink; it commits through the recorder.
        self.sink = LinkageSink(
            self.recorder,
            config.linkage,
            zones_with_cameras(config),
            self.arming,
            self.outputs,
            self.verification,
            latching=config.latching,
        )
        self.detection = None
        self.models = None  # signed model bundles (agent/model_updates.py)
        self.bundles = None  # ... arriving over MQTT (agent/bundle_receiver.py)
        self.detector_fault: str | None = None
        if any(cam.enabled for cam in config.cameras):
            # Imported here: OpenCV and the TFLite runtime load only on posts with cameras.
            from shaobing.agent.detection.pipeline import DetectionPipeline
            from shaobing.agent.detection.runtime import ModelError
            from shaobing.agent.model_updates import ModelUpdates

            self.models = ModelUpdates.from_config(config, self.recorder)
            try:
                self.detection = DetectionPipeline(
                    self.models.startup_detector(),
                    config.cameras,
                    self.sink,
                    config.detector,
                    schemes=camera_schemes,
                )
                self.models.pipeline = self.detection
                if config.updates.enabled:
                    from shaobing.agent.bundle_receiver import BundleReceiver

                    self.bundles = BundleReceiver(
                        state_dir / "updates", self.models, self.topics.base
                    )
                    self.uplink.subscribe(self.topics.bundle_chunks, self.bundles.on_message)
            except ModelError as exc:
                # GPIO and serial alarms keep working without the detector.
                self.detector_fault = str(exc)
                log.error("detector unavailable", extra={"fields": {"error": str(exc)}})
        if verifier is None and self.detection is not None:
            from shaobing.agent.camera_verifier import PipelineVerifier

            verify = config.linkage.verify
            verifier = PipelineVerifier(self.detection, verify.labels, verify.min_score)
            self.verification.verifier = verifier
        self.serial = SerialDrivers(config.serial, self.sink)
        # The one config-write path: platform commands and the console share it.
        self.config_editor = ConfigEditor(self, config_path)
        # Settings bundles on probation: confirmed, or rolled back on a fault they explain.
        self.settings = SettingsProbation(
            ConfigWatch(state_dir),
            self.config_editor,
            self.recorder,
            self.recorder.conditions.open,
            self.liveness.failing,
            self._detector_trouble,
            self.request_restart,
        )
        self.control: ControlChannel | None = None
        if config.control.enabled:
            self.control = ControlChannel(
                config.control,
                ControlDeps(
                    topics=self.topics,
                    device=config.device.id,
                    publisher=self.uplink,
                    target=self,
                    arming=self.arming,
                    linkage=self.sink,
                    sink=self.recorder,
                    verifier=verifier,
                    state_dir=state_dir,
                    config_path=config_path,
                    v5=config.mqtt.protocol == "5",
                    bundles=self.bundles,
                    editor=self.config_editor,
                    probation=self.settings,
                ),
            )
            self.uplink.subscribe_deferred(self.topics.commands, self.control.on_message)
        self.inputs = GpioInputs(config.inputs, self.sink, factory)
        self.health = HealthReporter(
            self.recorder,
            config.health.interval_s,
            config.storage.path.parent,
            self._sections,
            on_snapshot=self._write_status,
        )
        self.console = None
        if config.console.enabled:
            # Imported here: the web stack loads only on boxes that serve the console.
            from shaobing.agent.console.service import Console

            self.console = Console(self, config.console)
        self.parts = self._parts()
        for part in self.parts:
            if part.alive is not None:
                self.liveness.register(part.name, part.alive)
        # The spine's two threads run longer than any part: first started, last stopped.
        self.liveness.register("uplink", self.uplink.healthy)
        self.liveness.register("outbox-writer", self.outbox.alive)

    def _parts(self) -> list[Component]:
        """Every component with a lifecycle, in start order (stopped in reverse).

        Adding a component is one line here (docs/architecture.md, worker table)."""
        parts = [
            Component(
                "verification",
                self.verification.start,
                self.verification.stop,
                self.verification.alive,
            ),
            Component("arming-watch", self.sink.start, self.sink.stop, self.sink.alive),
        ]
        if self.control is not None:
            parts.append(
                Component("control", self.control.start, self.control.stop, self.control.alive)
            )
        parts.append(Component("gpio-inputs", self.inputs.start, self.inputs.close))
        if self.detection is not None:
            parts.append(
                Component(
                    "inference", self.detection.start, self.detection.stop, self.detection.alive
                )
            )
        if self.models is not None:
            parts.append(
                Component("model-watch", self.models.start, self.models.stop, self.models.alive)
            )
        if self.bundles is not None:
            parts.append(
                Component("updates", self.bundles.start, self.bundles.stop, self.bundles.alive)
            )
        parts += [
            Component("serial", self.serial.start, self.serial.stop, self.serial.alive),
            Component("health", self.health.start, self.health.stop, self.health.alive),
        ]
        if self.console is not None:
            parts.append(
                Component("console", self.console.start, self.console.stop, self.console.alive)
            )
        # Last: it judges the workers above, so they run before its first turn.
        parts.append(
            Component("config-watch", self.settings.start, self.settings.stop, self.settings.alive)
        )
        return parts

    def identity(self) -> dict[str, Any]:
        return {**self._identity(), "uptime_s": round(time.monotonic() - self.started_at, 1)}

    def apply_config(self, new: Config) -> list[str]:
        """Take over the sections that can change while running (LIVE_SECTIONS)."""
        applied = [s for s in LIVE_SECTIONS if getattr(new, s) != getattr(self.config, s)]
        zone_ids = [z.id for z in self.config.zones]
        if "arming" in applied:
            self.arming.reconfigure(new.arming, zone_ids)
        if "linkage" in applied:
            self.sink.reconfigure(new.linkage, zones_with_cameras(self.config))
        if "control" in applied and self.control is not None:
            self.control.reconfigure(new.control)
        if "updates" in applied and self.models is not None:
            self.models.reconfigure(new.updates)
        if new.cameras != self.config.cameras and cameras_change_live(
            self.config.cameras, new.cameras
        ):
            if self.detection is not None:
                running = set(self.detection.camera_ids())
                for cam in new.cameras:
                    if cam.id in running and cam not in self.config.cameras:
                        self.detection.reconfigure_camera(cam)
            applied.append("cameras")
        self.config = self.config.model_copy(update={s: getattr(new, s) for s in applied})
        return applied

    def request_restart(self) -> None:
        self.restart_requested.set()
        self._wake.set()

    def _clock_synchronised(self, anchor) -> None:
        # The platform re-times this boot's earlier events with this anchor;
        # rows still in the outbox also get "ts_corrected" when published.
        self.recorder.emit(
            "status.clock_sync",
            Source(kind="agent", id="clock"),
            data={"boot_id": self.clock.boot_id, "ts": anchor.ts_ms, "mono_ns": anchor.mono_ns},
        )

    def _sections(self) -> dict[str, Any]:
        # Callables, so the health worker evaluates (and guards) each on its own.
        stats = self.uplink.stats
        return {
            "run": lambda: self.outbox.run,
            "outbox": self.outbox.depth,
            "outbox_bytes": self.outbox.stored_bytes,
            "dropped": lambda: dict(self.outbox.dropped),
            "seq_skipped": self._seq_skipped,
            "uplink": lambda: {
                "connected": self.uplink.connected.is_set(),
                "connects": stats.connects,
                "published": stats.published,
                "acked": stats.acked,
                "refused": stats.refused,
                "last_refusal": stats.last_refusal,
                "inflight": stats.inflight,
                "endpoint": stats.endpoint,
                "failovers": stats.failovers,
                "connected_since": stats.connected_since,
                "acked_by_class": dict(stats.by_class),
            },
            "drivers": {
                "gpio_inputs": self.inputs.state,
                "gpio_outputs": self.outputs.state,
                "cameras": lambda: (
                    [asdict(s) for s in self.detection.stats()] if self.detection else []
                ),
                "serial": self.serial.state,
            },
            "workers": self.liveness.report,
            "arming": lambda: {z: s.state for z, s in self.arming.states().items()},
            "linkage": lambda: asdict(self.sink.stats),
            "verification": lambda: asdict(self.verification.stats),
            "control": lambda: asdict(self.control.stats) if self.control else None,
            "versions": self._versions,
            "warnings": lambda: (
                (["gpio_mock"] if self.config.gpio.backend == "mock" else [])
                + insecure_settings(self.config)
            ),
        }

    def _detector_trouble(self) -> str | None:
        """Why the detector does not serve, if it does not (settings bundles' watch)."""
        if self.detector_fault:
            return self.detector_fault
        faults = self.detection.faults if self.detection is not None else 0
        if faults >= self.config.updates.max_faults:
            return f"{faults} inference steps failed in a row"
        return None

    def _versions(self) -> dict[str, Any]:
        from shaobing.agent.versions import installed_model, versions

        running = self.models.versions() if self.models else installed_model(self.config)
        return versions(self.config, running)

    def _seq_skipped(self) -> list[dict[str, int]]:
        """Seq ranges the last starts skipped after crashes: what the crashes may have cost."""
        return [{"run": r, "from": a, "to": b} for r, a, b in self.outbox.seq_skips]

    def _write_status(self, health: dict[str, Any] | None, state: str = "running") -> None:
        """``status.json`` for ``shaobing status`` (agent/status_file.py); never fails."""
        tls = self.config.mqtt.tls
        # One consistent picture: the events first, then what they changed. The health
        # was measured before this call, so an alarm raised since would show under "last
        # events" but not in the outbox counts; the counts are read again after it.
        last_events = list(self.recorder.recent)
        open_alarms = self.sink.open_alarms()
        if health is not None:
            try:
                health = {**health, **self._outbox_counts()}
            except Exception:  # keep the health worker's figures; the file must still be written
                log.exception("cannot re-read the outbox counts for the status file")
        doc = {
            "state": state,
            "device": self.config.device.id,
            "version": agent_version(),
            "broker": f"{self.config.mqtt.host}:{self.config.mqtt.port}",
            "health": health,
            "open_alarms": open_alarms,
            "last_events": last_events,
            "certificate": certificate_expiry(tls.cert if tls else None),
        }
        try:
            write_status(status_path(self.config.storage.path.parent), doc)
        except OSError as exc:
            log.error("cannot write the status file", extra={"fields": {"error": str(exc)}})

    def _outbox_counts(self) -> dict[str, Any]:
        return {
            "outbox": self.outbox.depth(),
            "outbox_bytes": self.outbox.stored_bytes(),
            "dropped": dict(self.outbox.dropped),
        }

    def _final_health(self) -> dict[str, Any]:
        # The drivers are closed by now: what is left to tell is the outbox.
        return {**self._outbox_counts(), "uplink": {"connected": self.uplink.connected.is_set()}}

    def start(self) -> None:
        warn_at_start(self.config, self._config_path)
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
        if self.detector_fault:
            self.recorder.emit(
                "fault.detector",
                Source(kind="agent", id="detector"),
                data={"reason": self.detector_fault},
            )
        self.settings.at_start()
        for part in self.parts:
            part.start()
        log.info("agent started", extra={"fields": {"device": self.config.device.id}})

    def healthy(self) -> bool:
        return not self.liveness.failing()

    def stop(self) -> None:
        if self._stopped:
            return  # tests and signal handlers may both stop it
        self._stopped = True
        for part in reversed(self.parts):
            part.stop()
        self.outputs.close()
        self._drain_before_stop()
        self._write_status(self._final_health(), state="stopped")
        self.uplink.stop()
        self.outbox.close()
        log.info("agent stopped")

    def _drain_before_stop(self, grace_s: float = 2.0) -> None:
        """Commit batched telemetry and, while connected, give the uplink a moment
        to send what is waiting; whatever is left goes out after the next start."""
        self.outbox.flush()
        deadline = time.monotonic() + grace_s
        while (
            self.uplink.connected.is_set()
            and sum(self.outbox.depth().values())
            and time.monotonic() < deadline
        ):
            time.sleep(0.02)

    def run_until_signalled(
        self, notifier: Notifier | None = None, stop: threading.Event | None = None
    ) -> bool:
        """Returns True when a `restart` command, not a signal, ended the run."""
        notifier = notifier or Notifier.from_env()
        # A `restart` command sets the same event a signal does.
        stop = self._wake = stop or self._wake
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: stop.set())
        self.start()
        try:
            notifier.ready(f"device {self.config.device.id}")
            self.supervise(stop, notifier)
        finally:
            notifier.stopping()
            self.stop()
        return self.restart_requested.is_set()

    def supervise(self, stop: threading.Event, notifier: Notifier) -> None:
        """Feed the watchdog from this loop only while every worker is live."""
        period = notifier.watchdog_interval_s or 5.0
        reported: list[str] = []
        while not stop.wait(period):
            failing = self.liveness.failing()
            if not failing:
                notifier.watchdog()
            elif failing != reported:
                log.error(
                    "workers not live; withholding watchdog pings so systemd restarts us",
                    extra={"fields": {"failing": failing}},
                )
            reported = failing
