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

Only commands whose effect can be found on disk afterwards (``TRACKED``) are
recorded as ``started``: for the others a crash before ``done`` means "run
it again" either way, so the first write would buy nothing. Reads keep their
outcome, not their result (it described a moment, and a ``get_config`` is
large).

A handler's refusal (``CommandError``) changed nothing, so the id is forgotten;
an unexpected failure is recorded (``failed``): its effect is unknown, and a
retry must not risk doing it twice.
"""

from __future__ import annotations

from typing import Any

from shaobing.agent.command_effects import TRACKED, CommandEffects
from shaobing.agent.command_envelope import CommandError, Envelope
from shaobing.agent.command_handlers import Handler
from shaobing.agent.command_lanes import READS
from shaobing.agent.replay_cache import ReplayCache, Undo
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
        command_id, keep = envelope.id, command not in READS

        def finish(ok: bool, outcome: dict) -> dict:
            return self._cache.finish(command_id, envelope.expires_ms, command, ok, outcome, keep)

        record = self._cache.get(command_id)
        if record is not None and record["state"] == "done":
            original = {k: v for k, v in record.items() if k not in ("expires_ms", "state", "cmd")}
            raise Replayed(command_id, original)
        undo: Undo | None = None
        if record is not None:  # started, then a crash
            result = self._effects.applied(command, command_id, record.get("before") or {})
            if result is not None:
                raise Replayed(command_id, finish(True, result))
            # It never happened: run it now, under the record already on disk.
        elif command in TRACKED:
            before = self._effects.before(command, args)
            undo = self._cache.start(command_id, envelope.expires_ms, command, before)
        else:
            self._cache.make_room()
        pause_point(f"command_started:{command}")
        try:
            result = handler(args, envelope)
        except CommandError:
            if undo is not None:
                self._cache.forget(undo)
            else:
                self._cache.discard(command_id)
            raise
        except Exception as exc:
            finish(False, {"code": "failed", "message": f"{type(exc).__name__}: {exc}"})
            raise
        pause_point(f"command_applied:{command}")
        finish(True, result)
        return result
