"""Execute a command at most once, and answer a retry with what it really did.

The order, each step durable before the next (agent/replay_cache.py):
``started`` -> the command's effect -> ``done`` with its result -> the answer.
A retry of an id finds:

- ``done``: refused as ``replayed``, with ``original``: the answer the id had
  (``ok`` and ``result`` or ``error``, ``ts``);
- ``started`` (a crash cut the command): if its effect is on disk
  (agent/command_effects.py) the result is recorded and answered the same
  way, marked ``recovered``; if not, the command runs now, under its record;
- nothing: it runs.

A handler's refusal (``CommandError``) changed nothing, so the id is forgotten;
an unexpected failure is recorded (``failed``): its effect is unknown, and a
retry must not risk doing it twice.
"""

from __future__ import annotations

from typing import Any

from shaobing.agent.command_effects import CommandEffects
from shaobing.agent.command_envelope import CommandError, Envelope
from shaobing.agent.command_handlers import Handler
from shaobing.agent.replay_cache import ReplayCache
from shaobing.core.pause_points import pause_point


class Replayed(CommandError):
    def __init__(self, command_id: str, original: dict):
        super().__init__("replayed", f"command {command_id} was already executed")
        self.original = original


class ExecuteOnce:
    def __init__(self, cache: ReplayCache, effects: CommandEffects):
        self._cache = cache
        self._effects = effects

    def run(self, command: str, handler: Handler, args: Any, envelope: Envelope) -> dict:
        record = self._cache.get(envelope.id)
        if record is not None and record["state"] == "done":
            original = {k: v for k, v in record.items() if k not in ("expires_ms", "state", "cmd")}
            raise Replayed(envelope.id, original)
        if record is not None:  # started, then a crash
            result = self._effects.applied(command, envelope.id, record.get("before") or {})
            if result is not None:
                raise Replayed(envelope.id, self._cache.finish(envelope.id, True, result))
            undo = None  # it never happened: run it under the record already on disk
        else:
            before = self._effects.before(command, args)
            undo = self._cache.start(envelope.id, envelope.expires_ms, command, before)
        pause_point(f"command_started:{command}")
        try:
            result = handler(args, envelope)
        except CommandError:
            if undo is not None:
                self._cache.forget(undo)
            else:
                self._cache.discard(envelope.id)
            raise
        except Exception as exc:
            error = {"code": "failed", "message": f"{type(exc).__name__}: {exc}"}
            self._cache.finish(envelope.id, False, error)
            raise
        pause_point(f"command_applied:{command}")
        self._cache.finish(envelope.id, True, result)
        return result
