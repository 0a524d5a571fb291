"""Commands from the county platform: ``.../cmd/{command}`` in, a result on the response topic.

paho's network thread only copies the message into a bounded queue; one
``control`` worker thread checks (agent/command_envelope.py), consults the
replay cache (agent/replay_cache.py), executes (agent/command_handlers.py)
and answers, in arrival order. Nothing changes unless every check passes.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
from dataclasses import dataclass

import paho.mqtt.client as mqtt

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
from shaobing.agent.command_replies import Incoming, Replies
from shaobing.agent.command_signature import CommandVerifier
from shaobing.agent.config import ControlConfig
from shaobing.agent.config_commands import LIVE_SECTIONS, ConfigEditor
from shaobing.agent.replay_cache import ReplayCache
from shaobing.agent.security_policy import load_command_keys, load_hmac_key

__all__ = [
    "ARGS",
    "LIVE_SECTIONS",
    "ControlChannel",
    "ControlDeps",
    "Incoming",
    "canonical",
    "sign",
    "verifier_for",
]

log = logging.getLogger("shaobing.control")


def verifier_for(config: ControlConfig) -> CommandVerifier:
    """Raises ``KeyFileError`` (naming the file) for a missing, bad or too open key file."""
    return CommandVerifier(
        keyring=load_command_keys(config),
        hmac_key=load_hmac_key(config),
        insecure_unsigned=config.insecure_unsigned,
    )


@dataclass
class ControlStats:
    replies_redirected: int = 0  # ResponseTopic outside the reply lane (agent/reply_lane.py)
    received: int = 0
    executed: int = 0
    rejected: int = 0
    dropped: int = 0  # queue full


class ControlChannel:
    def __init__(self, config: ControlConfig, deps: ControlDeps):
        self.config = config
        self._verifier = verifier_for(config)
        self._deps = deps
        self._topics = deps.topics
        self._device = deps.device
        self._now = deps.now
        self.stats = ControlStats()
        self._seen = ReplayCache(
            deps.state_dir / "commands-seen.json", deps.now, lambda: self.config.max_clock_skew_s
        )
        editor = deps.editor or ConfigEditor(deps.target, deps.config_path, deps.now)
        self._handlers = CommandHandlers(deps, editor).table
        self._replies = Replies(deps)
        self._queue: queue.Queue[Incoming | None] = queue.Queue(maxsize=32)
        self._thread = threading.Thread(target=self._run, name="control", daemon=True)
        self._replies.keep_in_lane(lambda: self.config.reply_prefix, self._reply_redirected)

    def reconfigure(self, config: ControlConfig) -> None:
        self._verifier = verifier_for(config)
        self.config = config

    def _reply_redirected(self) -> None:
        self.stats.replies_redirected += 1

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
            body = parse_body(item.payload)
            raw_id = body.get("id")
            # Echo the id only when it is a well-formed one: never reflect junk.
            if isinstance(raw_id, str) and re.fullmatch(COMMAND_ID, raw_id):
                command_id = raw_id
            if command not in ARGS:
                raise CommandError(
                    "unknown_command", f"{command[:64]!r} is not one of {', '.join(ARGS)}"
                )
            envelope = validated(Envelope, body, "bad_envelope", ())
            self._verifier.check(body, command, self._device, envelope)
            check_time(
                envelope,
                int(self._now() * 1000),
                self.config.max_ttl_s,
                self.config.max_clock_skew_s,
            )
            args = validated(ARGS[command], envelope.args, "bad_args", ("args",))
            if envelope.id in self._seen:
                raise CommandError("replayed", f"command {envelope.id} was already executed")
            undo = self._seen.remember(envelope.id, envelope.expires_ms)
            try:
                result = self._handlers[command](args, envelope)
            except CommandError:
                self._seen.forget(undo)
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
            return self._replies.send(item, command, command_id, ok=False, error=error)
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

    def _audit(self, command: str, command_id: str | None, ok: bool, code: str | None) -> None:
        data = {"command_id": command_id, "cmd": command, "ok": ok, "error": code}
        try:
            self._deps.sink.emit("status.command", SOURCE, data=data)
        except Exception:
            log.exception("could not record command", extra={"fields": data})
