"""What each command does, once the channel has checked it (agent/control.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties

from shaobing.agent.arming import Arming, ArmingError
from shaobing.agent.command_envelope import (
    AcknowledgeArgs,
    ArmArgs,
    CommandError,
    ConfigUpdateArgs,
    Envelope,
    GetConfigArgs,
    ModelUpdateArgs,
    NoArgs,
    SetConfigArgs,
    SirenArgs,
    SnapshotArgs,
)
from shaobing.agent.config import Config
from shaobing.agent.config_commands import ConfigEditor
from shaobing.agent.linkage import LinkageSink
from shaobing.agent.topics import Topics
from shaobing.agent.verification import CameraDown, Verifier
from shaobing.core.events import EventSink, Source

SOURCE = Source(kind="agent", id="control")
SNAPSHOT_TIMEOUT_S = 5.0


class Target(Protocol):
    """The running agent, as seen by the command channel (agent.runtime.Agent)."""

    config: Config

    def apply_config(self, new: Config) -> list[str]: ...
    def request_restart(self) -> None: ...
    def identity(self) -> dict[str, Any]: ...


class Publisher(Protocol):
    def publish_direct(
        self, topic: str, payload: bytes, qos: int = 1, properties: Properties | None = None
    ) -> mqtt.MQTTMessageInfo: ...


@dataclass(frozen=True)
class ControlDeps:
    """Everything the command channel acts on or talks through."""

    topics: Topics
    device: str
    publisher: Publisher
    target: Target
    arming: Arming
    linkage: LinkageSink
    sink: EventSink
    verifier: Verifier | None
    state_dir: Path
    config_path: Path | None
    now: Callable[[], float] = time.time
    v5: bool = True
    bundles: BundleReceiver | None = None  # model_update (agent/bundle_receiver.py)
    # The agent's one ConfigEditor, shared with the console so both see one pending change.
    editor: ConfigEditor | None = None
    # The in-service watch of settings bundles (agent/settings_probation.py).
    probation: SettingsProbation | None = None


if TYPE_CHECKING:
    from shaobing.agent.bundle_receiver import BundleReceiver
    from shaobing.agent.settings_probation import SettingsProbation

Handler = Callable[[Any, Envelope], dict]


class CommandHandlers:
    def __init__(self, deps: ControlDeps, editor: ConfigEditor):
        self._deps = deps
        self.editor = editor
        self.table: dict[str, Handler] = {
            "arm": lambda a, e: self._arm(a, e, "armed"),
            "disarm": lambda a, e: self._arm(a, e, "disarmed"),
            "siren": self._siren,
            "snapshot": self._snapshot,
            "get_config": self._get_config,
            "set_config": self._set_config,
            "ping": self._ping,
            "restart": self._restart,
            "acknowledge": self._acknowledge,
            "model_update": self._model_update,
            "config_update": self._config_update,
        }

    def _arm(self, args: ArmArgs, envelope: Envelope, state: str) -> dict:
        try:
            outcome = self._deps.arming.set(args.zones, state, by=envelope.id)
        except ArmingError as exc:
            raise CommandError(exc.code, str(exc)) from None
        self._deps.linkage.arming_changed(outcome, by="command", command=envelope.id)
        return {"zones": outcome}

    def _siren(self, args: SirenArgs, envelope: Envelope) -> dict:
        outputs = self._deps.target.config.outputs
        known = {o.id for o in outputs}
        chosen = args.outputs or [o.id for o in outputs if o.kind == "siren"]
        unknown = [o for o in chosen if o not in known]
        if unknown:
            raise CommandError("bad_args", f"no such output: {', '.join(unknown)}")
        if not chosen:
            raise CommandError("not_supported", "this device has no siren output")
        if args.on:
            for output in chosen:
                self._deps.linkage.sound(output, args.duration_s)
        else:
            self._deps.linkage.silence(chosen)
        return {"outputs": chosen, "on": args.on, "duration_s": args.duration_s}

    def _snapshot(self, args: SnapshotArgs, envelope: Envelope) -> dict:
        verifier = self._deps.verifier
        if verifier is None:
            raise CommandError("not_supported", "no camera pipeline on this device")
        deadline = time.monotonic() + SNAPSHOT_TIMEOUT_S
        try:
            jpeg = verifier.snapshot(args.camera, deadline)
        except KeyError:
            raise CommandError("unknown_camera", f"no such camera: {args.camera}") from None
        except TimeoutError:
            raise CommandError("timeout", f"camera {args.camera} gave no frame in time") from None
        except CameraDown as exc:
            # Its last frame is from before the outage: sending it would pass old as now.
            raise CommandError("camera_down", str(exc)) from None
        event = self._deps.sink.emit(
            "status.snapshot",
            SOURCE,
            data={"camera": args.camera, "command_id": envelope.id, "bytes": len(jpeg)},
            attachment=jpeg,
        )
        return {
            "camera": args.camera,
            "event_id": event.id,
            "bytes": len(jpeg),
            "topic": self._deps.topics.snapshot(event.id),
        }

    def _get_config(self, args: GetConfigArgs, envelope: Envelope) -> dict:
        return self.editor.get(args.sections)

    def _set_config(self, args: SetConfigArgs, envelope: Envelope) -> dict:
        by = f"the set_config command {envelope.id}"
        if args.rollback:
            return self.editor.rollback(by)
        return self.editor.change(args.patch or {}, by)

    def _ping(self, args: NoArgs, envelope: Envelope) -> dict:
        return {"pong": True, **self._deps.target.identity()}

    def _restart(self, args: NoArgs, envelope: Envelope) -> dict:
        return {"restarting": True}

    def _acknowledge(self, args: AcknowledgeArgs, envelope: Envelope) -> dict:
        # GB 50394: latched alarms close only when acknowledged (agent/latching.py).
        known = {z.id for z in self._deps.target.config.zones}
        unknown = [] if args.zones == "all" else [z for z in args.zones if z not in known]
        if unknown:
            raise CommandError("unknown_zone", f"no such zone: {', '.join(unknown)}")
        event = self._deps.linkage.acknowledge(
            args.zones, args.alarms, by="command", command_id=envelope.id
        )
        return {
            "acknowledged": event.data["alarm_ids"] if event else [],
            "event_id": event.id if event else None,
        }

    def _model_update(self, args: ModelUpdateArgs, envelope: Envelope) -> dict:
        from shaobing.agent.bundle_receiver import OfferRefused

        if self._deps.bundles is None:
            raise CommandError("not_supported", "no camera pipeline or updates disabled here")
        try:
            return self._deps.bundles.offer(args.model_dump())
        except OfferRefused as exc:
            raise CommandError(exc.code, str(exc)) from None

    def _config_update(self, args: ConfigUpdateArgs, envelope: Envelope) -> dict:
        from shaobing.agent.config_bundle import AppliedVersions
        from shaobing.agent.config_install import take
        from shaobing.core.signing import KeyFileError, Keyring
        from shaobing.models.bundle import BundleError

        running = self._deps.target.config
        versions = AppliedVersions(self._deps.state_dir / "config-bundle.json")
        probation = self._deps.probation if self._deps.config_path is not None else None
        before = probation.snapshot() if probation is not None else []
        try:
            keyring = Keyring.load(running.control.command_keys)
            header, result = take(args.bundle, keyring, self.editor, versions)
        except (BundleError, KeyFileError) as exc:
            raise CommandError(getattr(exc, "code", "unknown_key"), str(exc)) from None
        if probation is not None:
            # Watched in service, and across restarts (agent/settings_probation.py).
            probation.begin(header.version, running, result, before)
        return {**result, "version": header.version}
