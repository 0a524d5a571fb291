"""Commands from the county platform: ``.../cmd/{command}`` in, a result on the response topic.

paho's network thread only copies the message into a bounded queue; one
``control`` worker thread parses, authenticates and executes, in arrival order.

Checks, in this order, each with its own error code (docs/mqtt.md):
size (before parsing) -> JSON -> command name -> envelope -> signature ->
issue/expiry time -> arguments -> replay (id already executed) -> execute.
Nothing changes unless every check passes. A command id is recorded as used
just before it executes, persisted, so a command is executed at most once,
across restarts too: a retained or re-sent ``restart`` cannot loop the box.

The HMAC-SHA256 signature (``sig``, lowercase hex) covers the canonical JSON
of the command object without ``sig`` and with ``cmd`` (the topic's last
segment) and ``device`` added, so a signed command cannot be re-aimed at
another command or another box. Canonical JSON = keys sorted, no whitespace,
UTF-8 without escaping (Python ``json.dumps(sort_keys=True,
separators=(",", ":"), ensure_ascii=False)``); see ``canonical``.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shaobing.agent.arming import Arming, ArmingError
from shaobing.agent.atomic import atomic_write, read_json
from shaobing.agent.config import (
    Config,
    ConfigError,
    ControlConfig,
    Identifier,
    dotted,
    load_config,
    validate_config,
)
from shaobing.agent.events import EventSink, Source
from shaobing.agent.linkage import LinkageSink
from shaobing.agent.topics import Topics
from shaobing.agent.verification import Verifier

log = logging.getLogger("shaobing.control")

SOURCE = Source(kind="agent", id="control")
COMMAND_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
SNAPSHOT_TIMEOUT_S = 5.0
REPLAY_CACHE_MAX = 4096
# Sections a running agent can take over without restarting; the others
# (device, site, zones, inputs, outputs, gpio, mqtt, storage, health) are
# read once by the constructors of drivers, outbox and uplink.
LIVE_SECTIONS = ("arming", "linkage", "control")


class CommandError(Exception):
    def __init__(self, code: str, message: str, details: list[dict] | None = None):
        self.code = code
        self.message = message
        self.details = details
        super().__init__(f"{code}: {message}")


# ---- payload models -------------------------------------------------------
class _Strict(BaseModel):
    # strict: "5" is not 5 and 1 is not true; the platform must send the right types.
    model_config = ConfigDict(extra="forbid", strict=True)


class Envelope(_Strict):
    v: Literal[1] = Field(default=1, description="command schema version")
    id: str = Field(pattern=COMMAND_ID, description="unique per command; echoed in the result")
    issued_ms: int = Field(ge=0, description="platform wall clock at issue, ms since the epoch")
    expires_ms: int = Field(ge=0, description="not executed after this time")
    args: dict[str, Any] = Field(default_factory=dict, description="command arguments")
    sig: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$", description="HMAC-SHA256")


Zones = list[Identifier] | Literal["all"]


class ArmArgs(_Strict):
    zones: Annotated[Zones, Field(description="zone ids, or 'all'")]

    @model_validator(mode="after")
    def _some(self) -> ArmArgs:
        if isinstance(self.zones, list) and not 1 <= len(self.zones) <= 64:
            raise ValueError("zones: give 1 to 64 zone ids, or 'all'")
        return self


class SirenArgs(_Strict):
    on: bool = Field(description="true: sound for duration_s; false: silence now")
    duration_s: float | None = Field(default=None, gt=0, le=600, description="with on=true")
    outputs: list[Identifier] | None = Field(
        default=None, min_length=1, max_length=16, description="default: every siren output"
    )

    @model_validator(mode="after")
    def _duration(self) -> SirenArgs:
        if self.on and self.duration_s is None:
            raise ValueError("duration_s is required with on=true (a siren must stop by itself)")
        if not self.on and self.duration_s is not None:
            raise ValueError("duration_s only goes with on=true")
        return self


class SnapshotArgs(_Strict):
    camera: Identifier


class GetConfigArgs(_Strict):
    sections: list[Identifier] | None = Field(default=None, min_length=1, max_length=32)


class SetConfigArgs(_Strict):
    patch: dict[str, Any] | None = Field(default=None, description="JSON merge patch (RFC 7386)")
    rollback: bool = Field(default=False, description="go back to the previous config")

    @model_validator(mode="after")
    def _one(self) -> SetConfigArgs:
        if (self.patch is None) == (not self.rollback):
            raise ValueError("give exactly one of patch or rollback=true")
        return self


class NoArgs(_Strict):
    pass


class AcknowledgeArgs(_Strict):
    zones: Annotated[Zones, Field(description="zone ids, or 'all'")] = "all"
    alarms: list[str] | None = Field(
        default=None, min_length=1, max_length=64, description="alarm event ids; default: all"
    )


ARGS: dict[str, type[_Strict]] = {
    "arm": ArmArgs,
    "disarm": ArmArgs,
    "siren": SirenArgs,
    "snapshot": SnapshotArgs,
    "get_config": GetConfigArgs,
    "set_config": SetConfigArgs,
    "ping": NoArgs,
    "restart": NoArgs,
    "acknowledge": AcknowledgeArgs,
}


# ---- helpers the platform side can use too --------------------------------
def canonical(body: dict[str, Any], command: str, device: str) -> bytes:
    signed = {k: v for k, v in body.items() if k != "sig"}
    signed["cmd"] = command
    signed["device"] = device
    return json.dumps(signed, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign(body: dict[str, Any], command: str, device: str, key: bytes) -> str:
    return hmac.new(key, canonical(body, command, device), hashlib.sha256).hexdigest()


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge, null deletes (the field returns to its default), else replace."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def config_data(config: Config) -> dict[str, Any]:
    return config.model_dump(mode="json", exclude_defaults=True)


def redact(data: dict[str, Any]) -> dict[str, Any]:
    mqtt_section = data.get("mqtt")
    if isinstance(mqtt_section, dict) and mqtt_section.get("password") is not None:
        data = {**data, "mqtt": {**mqtt_section, "password": "***"}}
    return data


def load_key(config: ControlConfig) -> bytes | None:
    if config.key_env and os.environ.get(config.key_env):
        return os.environ[config.key_env].strip().encode()
    if config.key_file:
        try:
            return config.key_file.read_bytes().strip() or None
        except OSError as exc:
            log.error("cannot read the command key", extra={"fields": {"error": str(exc)}})
    return None


# ---- what the channel acts on ---------------------------------------------
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
class Incoming:
    topic: str
    payload: bytes | None  # None: larger than the limit, not kept
    size: int
    response_topic: str | None
    correlation: bytes | None


@dataclass
class ControlStats:
    received: int = 0
    executed: int = 0
    rejected: int = 0
    dropped: int = 0  # queue full


class ControlChannel:
    def __init__(
        self,
        config: ControlConfig,
        topics: Topics,
        device: str,
        publisher: Publisher,
        target: Target,
        arming: Arming,
        linkage: LinkageSink,
        sink: EventSink,
        verifier: Verifier | None,
        state_dir: Path,
        config_path: Path | None,
        now: Callable[[], float] = time.time,
        v5: bool = True,
    ):
        self.config = config
        self._key = load_key(config)
        self._topics = topics
        self._device = device
        self._publisher = publisher
        self._target = target
        self._arming = arming
        self._linkage = linkage
        self._sink = sink
        self._verifier = verifier
        self._config_path = config_path
        self._pending: Config | None = None  # written to the file, waiting for a restart
        self._pending_sections: list[str] = []
        self._now = now
        self._v5 = v5
        self.stats = ControlStats()
        self._seen_path = state_dir / "commands-seen.json"
        self._seen = self._load_seen()
        self._queue: queue.Queue[Incoming | None] = queue.Queue(maxsize=32)
        self._thread = threading.Thread(target=self._run, name="control", daemon=True)
        self._handlers: dict[str, Callable[[Any, Envelope], dict]] = {
            "arm": lambda a, e: self._arm(a, e, "armed"),
            "disarm": lambda a, e: self._arm(a, e, "disarmed"),
            "siren": self._siren,
            "snapshot": self._snapshot,
            "get_config": self._get_config,
            "set_config": self._set_config,
            "ping": self._ping,
            "restart": self._restart,
            "acknowledge": self._acknowledge,
        }

    def reconfigure(self, config: ControlConfig) -> None:
        self.config = config
        self._key = load_key(config)

    # ---- replay cache -------------------------------------------------
    def _load_seen(self) -> dict[str, int]:
        data, aside = read_json(self._seen_path)
        if aside:
            log.error("command id cache was unreadable", extra={"fields": {"kept_as": str(aside)}})
        if isinstance(data, dict) and isinstance(data.get("seen"), dict):
            return {k: v for k, v in data["seen"].items() if isinstance(v, int)}
        return {}

    def _remember(self, command_id: str, expires_ms: int) -> tuple[dict[str, int], bytes | None]:
        """Record the id before executing; returns what ``_forget`` needs to undo it."""
        undo = (
            dict(self._seen),
            self._seen_path.read_bytes() if self._seen_path.exists() else None,
        )
        now_ms = int(self._now() * 1000)
        skew_ms = int(self.config.max_clock_skew_s * 1000)
        # An id whose command has expired can no longer be replayed successfully.
        self._seen = {k: v for k, v in self._seen.items() if v + skew_ms >= now_ms}
        if len(self._seen) >= REPLAY_CACHE_MAX:
            raise CommandError("busy", "too many recent commands; retry later")
        self._seen[command_id] = expires_ms
        atomic_write(self._seen_path, json.dumps({"v": 1, "seen": self._seen}).encode())
        return undo

    def _forget(self, undo: tuple[dict[str, int], bytes | None]) -> None:
        # The command was refused by its handler before changing anything: it
        # leaves no trace, not even its id.
        self._seen, raw = undo
        if raw is None:
            self._seen_path.unlink(missing_ok=True)
        else:
            atomic_write(self._seen_path, raw)

    # ---- paho network thread -------------------------------------------
    def on_message(self, msg: mqtt.MQTTMessage) -> None:
        """Runs on paho's thread: copy, bound, queue. No parsing here."""
        if msg.topic == self._topics.responses:
            return  # our own answers match cmd/+ too
        props = getattr(msg, "properties", None)
        raw = bytes(msg.payload)
        item = Incoming(
            topic=msg.topic,
            payload=raw if len(raw) <= self.config.max_payload_bytes else None,
            size=len(raw),
            response_topic=getattr(props, "ResponseTopic", None) if props else None,
            correlation=getattr(props, "CorrelationData", None) if props else None,
        )
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.stats.dropped += 1
            log.warning(
                "command queue full; command dropped", extra={"fields": {"topic": msg.topic}}
            )

    # ---- worker ----------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def alive(self) -> bool:
        """Liveness for the systemd watchdog: the worker runs (or was never started)."""
        return self._thread.ident is None or self._thread.is_alive()

    def stop(self, timeout: float = 3.0) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                self.handle(item)
            except Exception:
                log.exception("command handling failed")

    def handle(self, item: Incoming) -> dict:
        """Check and execute one command; publishes and returns the response body."""
        self.stats.received += 1
        command = item.topic.rsplit("/", 1)[-1]
        command_id: str | None = None
        try:
            if item.payload is None:
                raise CommandError(
                    "too_large", f"{item.size} bytes; the limit is {self.config.max_payload_bytes}"
                )
            try:
                body = json.loads(item.payload.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as exc:
                raise CommandError("bad_json", f"not a UTF-8 JSON document: {exc}") from None
            except RecursionError:
                # 16 KiB of "[[[[..." is enough to exhaust the parser's stack.
                raise CommandError("bad_json", "nested too deeply") from None
            if not isinstance(body, dict):
                raise CommandError("bad_json", "the command must be a JSON object")
            raw_id = body.get("id")
            # Echo the id only when it is a well-formed one: never reflect junk.
            if isinstance(raw_id, str) and re.fullmatch(COMMAND_ID, raw_id):
                command_id = raw_id
            if command not in ARGS:
                raise CommandError(
                    "unknown_command", f"{command[:64]!r} is not one of {', '.join(ARGS)}"
                )
            envelope = _validated(Envelope, body, "bad_envelope", ())
            self._check_signature(body, command, envelope)
            self._check_time(envelope)
            args = _validated(ARGS[command], envelope.args, "bad_args", ("args",))
            if envelope.id in self._seen:
                raise CommandError("replayed", f"command {envelope.id} was already executed")
            undo = self._remember(envelope.id, envelope.expires_ms)
            try:
                result = self._handlers[command](args, envelope)
            except CommandError:
                self._forget(undo)
                raise
        except CommandError as exc:
            self.stats.rejected += 1
            error = {"code": exc.code, "message": exc.message}
            if exc.details:
                error["details"] = exc.details
            log.warning(
                "command rejected",
                extra={"fields": {"cmd": command[:64], "id": command_id, **error}},
            )
            return self._respond(item, command, command_id, ok=False, error=error)
        except Exception as exc:
            self.stats.rejected += 1
            log.exception("command failed", extra={"fields": {"cmd": command, "id": command_id}})
            error = {"code": "failed", "message": f"{type(exc).__name__}: {exc}"}
            self._audit(command, command_id, False, "failed")
            return self._respond(item, command, command_id, ok=False, error=error)
        self.stats.executed += 1
        if command not in ("ping", "get_config"):
            self._audit(command, command_id, True, None)
        response = self._respond(item, command, command_id, ok=True, result=result)
        if command == "restart":
            self._target.request_restart()
        return response

    def _check_signature(self, body: dict, command: str, envelope: Envelope) -> None:
        if envelope.sig is None:
            if self.config.require_signature:
                raise CommandError("signature_required", "this device only accepts signed commands")
            return
        if self._key is None:
            if self.config.require_signature:
                raise CommandError("no_key", "the device has no command key; cannot verify")
            raise CommandError("bad_signature", "signed command, but no key is configured")
        expected = sign(body, command, self._device, self._key)
        if not hmac.compare_digest(expected, envelope.sig):
            raise CommandError("bad_signature", "signature does not match")

    def _check_time(self, envelope: Envelope) -> None:
        cfg = self.config
        if envelope.expires_ms <= envelope.issued_ms:
            raise CommandError("bad_envelope", "expires_ms must be after issued_ms")
        if envelope.expires_ms - envelope.issued_ms > cfg.max_ttl_s * 1000:
            raise CommandError(
                "bad_envelope", f"lifetime over the device's limit of {cfg.max_ttl_s:g} s"
            )
        now_ms = int(self._now() * 1000)
        skew_ms = int(cfg.max_clock_skew_s * 1000)
        if envelope.issued_ms > now_ms + skew_ms:
            raise CommandError(
                "not_yet_valid",
                f"issued {envelope.issued_ms - now_ms} ms in the device's future"
                " (check both clocks)",
            )
        if envelope.expires_ms + skew_ms < now_ms:
            raise CommandError(
                "expired", f"expired {now_ms - envelope.expires_ms} ms ago by the device's clock"
            )

    # ---- responses --------------------------------------------------------
    def _respond(
        self,
        item: Incoming,
        command: str,
        command_id: str | None,
        ok: bool,
        result: dict | None = None,
        error: dict | None = None,
    ) -> dict:
        body: dict[str, Any] = {
            "v": 1,
            "id": command_id,
            "cmd": command[:64],
            "device": self._device,
            "ts": int(self._now() * 1000),
            "ok": ok,
        }
        if ok:
            body["result"] = result or {}
        else:
            body["error"] = error
        topic = self._topics.responses
        props = None
        if self._v5:
            props = Properties(PacketTypes.PUBLISH)
            if item.correlation is not None:
                props.CorrelationData = item.correlation
            if item.response_topic and self._allowed_reply(item.response_topic):
                topic = item.response_topic
        payload = json.dumps(body, ensure_ascii=False).encode()
        try:
            info = self._publisher.publish_direct(topic, payload, qos=1, properties=props)
            if command == "restart":
                with contextlib.suppress(Exception):
                    info.wait_for_publish(2.0)
        except Exception:
            log.exception("could not publish command response")
        return body

    def _allowed_reply(self, topic: str) -> bool:
        # A command must not make the box publish into its own event or state
        # topics (that would forge events): replies go outside the device's
        # tree, or to its own cmd/response.
        if "+" in topic or "#" in topic or not topic:
            return False
        base = self._topics.base + "/"
        return not topic.startswith(base) or topic == self._topics.responses

    def _audit(self, command: str, command_id: str | None, ok: bool, code: str | None) -> None:
        data = {"command_id": command_id, "cmd": command, "ok": ok, "error": code}
        try:
            self._sink.emit("status.command", SOURCE, data=data)
        except Exception:
            log.exception("could not record command", extra={"fields": data})

    # ---- the commands -----------------------------------------------------
    def _arm(self, args: ArmArgs, envelope: Envelope, state: str) -> dict:
        try:
            outcome = self._arming.set(args.zones, state, by=envelope.id)
        except ArmingError as exc:
            raise CommandError(exc.code, str(exc)) from None
        self._linkage.arming_changed(outcome, by="command", command=envelope.id)
        return {"zones": outcome}

    def _siren(self, args: SirenArgs, envelope: Envelope) -> dict:
        outputs = self._target.config.outputs
        known = {o.id for o in outputs}
        chosen = args.outputs or [o.id for o in outputs if o.kind == "siren"]
        unknown = [o for o in chosen if o not in known]
        if unknown:
            raise CommandError("bad_args", f"no such output: {', '.join(unknown)}")
        if not chosen:
            raise CommandError("not_supported", "this device has no siren output")
        if args.on:
            for output in chosen:
                self._linkage.sound(output, args.duration_s)
        else:
            self._linkage.silence(chosen)
        return {"outputs": chosen, "on": args.on, "duration_s": args.duration_s}

    def _snapshot(self, args: SnapshotArgs, envelope: Envelope) -> dict:
        if self._verifier is None:
            raise CommandError("not_supported", "no camera pipeline on this device")
        deadline = time.monotonic() + SNAPSHOT_TIMEOUT_S
        try:
            jpeg = self._verifier.snapshot(args.camera, deadline)
        except KeyError:
            raise CommandError("unknown_camera", f"no such camera: {args.camera}") from None
        except TimeoutError:
            raise CommandError("timeout", f"camera {args.camera} gave no frame in time") from None
        event = self._sink.emit(
            "status.snapshot",
            SOURCE,
            data={"camera": args.camera, "command_id": envelope.id, "bytes": len(jpeg)},
            attachment=jpeg,
        )
        return {
            "camera": args.camera,
            "event_id": event.id,
            "bytes": len(jpeg),
            "topic": self._topics.snapshot(event.id),
        }

    def _get_config(self, args: GetConfigArgs, envelope: Envelope) -> dict:
        data = redact(config_data(self._target.config))
        if args.sections:
            unknown = [s for s in args.sections if s not in Config.model_fields]
            if unknown:
                raise CommandError("bad_args", f"no such section: {', '.join(unknown)}")
            data = {s: data.get(s) for s in args.sections}
        return {"config": data, "restart_required": list(self._pending_sections)}

    def _set_config(self, args: SetConfigArgs, envelope: Envelope) -> dict:
        running = self._target.config
        base = self._pending or running
        if args.rollback:
            new = self._previous_config()
        else:
            merged = merge_patch(config_data(base), args.patch)
            problems: list = []
            new = validate_config(merged, {}, problems) if isinstance(merged, dict) else None
            if new is None:
                details = [{"path": p.path, "message": p.message} for p in problems]
                raise CommandError("invalid_config", f"{len(details)} problem(s)", details)
        changed = [s for s in Config.model_fields if getattr(new, s) != getattr(running, s)]
        restart = [s for s in changed if s not in LIVE_SECTIONS]
        persisted = self._persist(new, envelope)
        if restart:
            # Half a config is worse than the old one: nothing is applied
            # until the restart takes the whole file.
            self._pending, self._pending_sections = new, restart
            applied: list[str] = []
        else:
            self._pending, self._pending_sections = None, []
            applied = self._target.apply_config(new)
        return {
            "changed": changed,
            "applied": applied,
            "restart_required": restart,
            "persisted": persisted,
        }

    def _previous_config(self) -> Config:
        if self._config_path is None:
            raise CommandError("not_supported", "the agent runs without a config file")
        prev = self._config_path.with_name(self._config_path.name + ".prev")
        if not prev.exists():
            raise CommandError("no_previous", "there is no previous config to go back to")
        try:
            return load_config(prev)
        except ConfigError as exc:
            details = [{"path": p.path, "message": p.message} for p in exc.problems]
            raise CommandError(
                "invalid_config", "the previous config is invalid", details
            ) from None

    def _persist(self, new: Config, envelope: Envelope) -> bool:
        path = self._config_path
        if path is None:
            return False
        header = (
            f"# Written by the set_config command {envelope.id} at "
            f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(self._now()))}.\n"
            f"# The file before it is kept as {path.name}.prev (set_config rollback).\n"
        )
        text = header + yaml.safe_dump(
            config_data(new), allow_unicode=True, sort_keys=False, default_flow_style=False
        )
        if path.exists():
            atomic_write(path.with_name(path.name + ".prev"), path.read_bytes())
        atomic_write(path, text.encode("utf-8"), mode=0o640)
        return True

    def _acknowledge(self, args: AcknowledgeArgs, envelope: Envelope) -> dict:
        # GB 50394: latched alarms close only when acknowledged (agent/latching.py).
        known = {z.id for z in self._target.config.zones}
        unknown = [] if args.zones == "all" else [z for z in args.zones if z not in known]
        if unknown:
            raise CommandError("unknown_zone", f"no such zone: {', '.join(unknown)}")
        event = self._linkage.acknowledge(
            args.zones, args.alarms, by="command", command_id=envelope.id
        )
        return {
            "acknowledged": event.data["alarm_ids"] if event else [],
            "event_id": event.id if event else None,
        }

    def _ping(self, args: NoArgs, envelope: Envelope) -> dict:
        return {"pong": True, **self._target.identity()}

    def _restart(self, args: NoArgs, envelope: Envelope) -> dict:
        return {"restarting": True}


def _validated(model: type[BaseModel], data: Any, code: str, prefix: tuple) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = [
            {"path": dotted(prefix + tuple(err["loc"])), "message": err["msg"]}
            for err in exc.errors()[:20]
        ]
        first = details[0] if details else {"path": "", "message": "invalid"}
        raise CommandError(
            code, f"{first['path'] or '<top>'}: {first['message']}", details
        ) from None
