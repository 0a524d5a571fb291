"""Commands from the county platform: ``.../cmd/{command}`` in, a result on the response topic.

paho's network thread only copies the message into a lane
(agent/command_lanes.py: actions before reads, ``busy`` for a full lane);
one ``control`` worker thread acknowledges it to the broker as it takes it,
checks (agent/command_envelope.py), consults the replay cache
(agent/replay_cache.py), executes (agent/command_handlers.py) and answers.
Nothing changes unless every check passes.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import re
import threading
from dataclasses import dataclass

import paho.mqtt.client as mqtt

from shaobing.agent.command_effects import CommandEffects
from shaobing.agent.command_envelope import (
    ARGS,
    COMMAND_ID,
    CommandError,
    Envelope,
    canonical,
    check_time,
    parse_body,
    sign,
    validated,
)
from shaobing.agent.command_handlers import SOURCE, CommandHandlers, ControlDeps
from shaobing.agent.command_lanes import CommandLanes, Queued
from shaobing.agent.command_once import ExecuteOnce, Replayed
from shaobing.agent.command_replies import Incoming, Replies
from shaobing.agent.config import ControlConfig
from shaobing.agent.config_commands import LIVE_SECTIONS, ConfigEditor
from shaobing.agent.inbound_acks import Ack
from shaobing.agent.replay_cache import ReplayCache

__all__ = [
    "ARGS",
    "LIVE_SECTIONS",
    "ControlChannel",
    "ControlDeps",
    "Incoming",
    "canonical",
    "load_key",
    "sign",
]

log = logging.getLogger("shaobing.control")


def load_key(config: ControlConfig) -> bytes | None:
    if config.key_env and os.environ.get(config.key_env):
        return os.environ[config.key_env].strip().encode()
    if config.key_file:
        try:
            return config.key_file.read_bytes().strip() or None
        except OSError as exc:
            log.error("cannot read the command key", extra={"fields": {"error": str(exc)}})
    return None


def _echoable_id(body: dict) -> str | None:
    # Echo the id only when it is a well-formed one: never reflect junk.
    raw_id = body.get("id")
    return raw_id if isinstance(raw_id, str) and re.fullmatch(COMMAND_ID, raw_id) else None


@dataclass
class ControlStats:
    replies_redirected: int = 0  # ResponseTopic outside the reply lane (agent/reply_lane.py)
    received: int = 0
    executed: int = 0
    rejected: int = 0
    busy: int = 0  # refused for load, answered `busy`
    dropped: int = 0  # not even a `busy` answer: the broker ignored its in-flight limit


class ControlChannel:
    def __init__(self, config: ControlConfig, deps: ControlDeps):
        self.config = config
        self._key = load_key(config)
        self._deps = deps
        self._topics = deps.topics
        self._device = deps.device
        self._now = deps.now
        self.stats = ControlStats()
        seen = ReplayCache(
            deps.state_dir / "commands-seen.json", deps.now, lambda: self.config.max_clock_skew_s
        )
        effects = CommandEffects(
            deps.arming,
            deps.config_path,
            lambda zones, cid: deps.linkage.arming_changed(zones, by="command", command=cid),
        )
        self._once = ExecuteOnce(seen, effects)
        editor = deps.editor or ConfigEditor(deps.target, deps.config_path, deps.now)
        self._handlers = CommandHandlers(deps, editor).table
        self._replies = Replies(deps)
        self._lanes = CommandLanes()
        self._thread = threading.Thread(target=self._run, name="control", daemon=True)
        self._replies.keep_in_lane(lambda: self.config.reply_prefix, self._reply_redirected)

    def reconfigure(self, config: ControlConfig) -> None:
        self.config = config
        self._key = load_key(config)

    def _reply_redirected(self) -> None:
        self.stats.replies_redirected += 1

    # ---- paho network thread -------------------------------------------
    def on_message(self, msg: mqtt.MQTTMessage, ack: Ack) -> None:
        """Runs on paho's thread: copy, bound, queue. No parsing here.

        ``ack`` PUBACKs the message; the worker calls it when it takes it."""
        if msg.topic == self._topics.responses:
            ack()
            return  # our own answers (MQTT 3.1.1) match cmd/+ too
        props = getattr(msg, "properties", None)
        raw = bytes(msg.payload)
        item = Incoming(
            topic=msg.topic,
            payload=raw if len(raw) <= self.config.max_payload_bytes else None,
            size=len(raw),
            response_topic=getattr(props, "ResponseTopic", None) if props else None,
            correlation=getattr(props, "CorrelationData", None) if props else None,
        )
        if not self._lanes.offer(item, ack):
            self.stats.dropped += 1

    # ---- worker ----------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def alive(self) -> bool:
        """Liveness for the systemd watchdog: the worker runs (or was never started)."""
        return self._thread.ident is None or self._thread.is_alive()

    def stop(self, timeout: float = 3.0) -> None:
        self._lanes.close()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while (queued := self._lanes.take()) is not None:
            try:
                self._serve(queued)
            except Exception:
                log.exception("command handling failed")

    def _serve(self, queued: Queued) -> None:
        if not queued.busy:
            queued.ack()  # taken in: the broker may send the next one while this runs
            self.handle(queued.item)
            return
        # Answered before acknowledged: the platform always learns the outcome.
        self.stats.received += 1
        self.stats.busy += 1
        item, command_id = queued.item, None
        command = item.topic.rsplit("/", 1)[-1]
        with contextlib.suppress(CommandError):
            command_id = _echoable_id(parse_body(item.payload)) if item.payload else None
        error = {"code": "busy", "message": "too many commands waiting; retry later"}
        self._replies.send(item, command, command_id, ok=False, error=error)
        queued.ack()

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
            body = parse_body(item.payload)
            command_id = _echoable_id(body)
            if command not in ARGS:
                raise CommandError(
                    "unknown_command", f"{command[:64]!r} is not one of {', '.join(ARGS)}"
                )
            envelope = validated(Envelope, body, "bad_envelope", ())
            self._check_signature(body, command, envelope)
            check_time(
                envelope,
                int(self._now() * 1000),
                self.config.max_ttl_s,
                self.config.max_clock_skew_s,
            )
            args = validated(ARGS[command], envelope.args, "bad_args", ("args",))
            result = self._once.run(command, self._handlers[command], args, envelope)
        except CommandError as exc:
            self.stats.rejected += 1
            error = {"code": exc.code, "message": exc.message}
            if exc.details:
                error["details"] = exc.details
            log.warning(
                "command rejected",
                extra={"fields": {"cmd": command[:64], "id": command_id, **error}},
            )
            # A replayed id is answered with what it really did (agent/command_once.py).
            extra = {"original": exc.original} if isinstance(exc, Replayed) else None
            return self._replies.send(item, command, command_id, False, error=error, extra=extra)
        except Exception as exc:
            self.stats.rejected += 1
            log.exception("command failed", extra={"fields": {"cmd": command, "id": command_id}})
            error = {"code": "failed", "message": f"{type(exc).__name__}: {exc}"}
            self._audit(command, command_id, False, "failed")
            return self._replies.send(item, command, command_id, ok=False, error=error)
        self.stats.executed += 1
        if command not in ("ping", "get_config"):
            self._audit(command, command_id, True, None)
        response = self._replies.send(item, command, command_id, ok=True, result=result)
        if command == "restart":
            self._deps.target.request_restart()
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

    def _audit(self, command: str, command_id: str | None, ok: bool, code: str | None) -> None:
        data = {"command_id": command_id, "cmd": command, "ok": ok, "error": code}
        try:
            self._deps.sink.emit("status.command", SOURCE, data=data)
        except Exception:
            log.exception("could not record command", extra={"fields": data})
