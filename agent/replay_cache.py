"""Command ids seen, with what became of them, kept on disk until their command expires.

A command is executed at most once, across restarts too (a retained or
re-sent ``restart`` cannot loop the box), and a retry of an id is answered
with the result that id really had. Each id goes through two durable records:

- ``started`` (id, command, ``before``: evidence for agent/command_effects.py),
  written before the command runs;
- ``done`` (id, ``ok``, ``result`` or ``error``), written once its effect is
  durable.

A crash between the two leaves ``started``: agent/command_once.py then asks
whether the effect happened (the arm state carries the id that last changed
it) and either runs the command or records and answers what it did.

File format (``commands-seen.json``, v2): ``{"v": 2, "seen": {id: record}}``.
A v1 file (``{"seen": {id: expires_ms}}``) is read as ``done`` records with
no result.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shaobing.agent.command_envelope import CommandError
from shaobing.core.atomic import atomic_write, read_json

log = logging.getLogger("shaobing.control")

REPLAY_CACHE_MAX = 4096
# A result larger than this is not kept, only its outcome (nor is a read's:
# agent/command_once.py), so the file, rewritten per command, stays small.
RESULT_MAX_BYTES = 8192

Undo = tuple[dict[str, dict], bytes | None]


def _record(value: Any) -> dict | None:
    if isinstance(value, int):  # v1
        return {"expires_ms": value, "state": "done"}
    if (
        isinstance(value, dict)
        and isinstance(value.get("expires_ms"), int)
        and value.get("state") in ("started", "done")
    ):
        return value
    return None


class ReplayCache:
    def __init__(self, path: Path, now: Callable[[], float], max_skew_s: Callable[[], float]):
        self._path = path
        self._now = now
        self._max_skew_s = max_skew_s  # read at each use: the control section can change live
        self._seen = self._load()

    def __contains__(self, command_id: str) -> bool:
        return command_id in self._seen

    def get(self, command_id: str) -> dict | None:
        return self._seen.get(command_id)

    def _load(self) -> dict[str, dict]:
        data, aside = read_json(self._path)
        if aside:
            log.error("command id cache was unreadable", extra={"fields": {"kept_as": str(aside)}})
        if isinstance(data, dict) and isinstance(data.get("seen"), dict):
            records = {k: _record(v) for k, v in data["seen"].items()}
            return {k: r for k, r in records.items() if r is not None}
        return {}

    def _save(self) -> None:
        atomic_write(self._path, json.dumps({"v": 2, "seen": self._seen}).encode())

    def make_room(self) -> None:
        """Before executing: forget expired ids; ``busy`` if the cache is still full."""
        now_ms = int(self._now() * 1000)
        skew_ms = int(self._max_skew_s() * 1000)
        # An id whose command has expired can no longer be replayed successfully.
        self._seen = {k: v for k, v in self._seen.items() if v["expires_ms"] + skew_ms >= now_ms}
        if len(self._seen) >= REPLAY_CACHE_MAX:
            raise CommandError("busy", "too many recent commands; retry later")

    def start(self, command_id: str, expires_ms: int, command: str, before: dict) -> Undo:
        """Record the id as started, durably, before executing; returns what
        ``forget`` needs to undo it."""
        undo = (dict(self._seen), self._path.read_bytes() if self._path.exists() else None)
        self.make_room()
        self._seen[command_id] = {
            "expires_ms": expires_ms,
            "state": "started",
            "cmd": command,
            "before": before,
        }
        self._save()
        return undo

    def finish(
        self, command_id: str, expires_ms: int, command: str, ok: bool, outcome: dict, keep: bool
    ) -> dict:
        """Record what the command did (``result`` if ok, else ``error``; only
        its outcome unless ``keep``), durably, whether or not it was started.

        Returns the record's answer part, as a retry of the id will see it."""
        answer: dict[str, Any] = {"ok": ok, "ts": int(self._now() * 1000)}
        key = "result" if ok else "error"
        if keep and len(json.dumps(outcome, ensure_ascii=False).encode()) <= RESULT_MAX_BYTES:
            answer[key] = outcome
        else:
            answer[f"{key}_omitted"] = True
        self._seen[command_id] = {
            "expires_ms": expires_ms,
            "state": "done",
            "cmd": command,
            **answer,
        }
        self._save()
        return answer

    def discard(self, command_id: str) -> None:
        """Drop a ``started`` record whose command, run again after a crash, was refused."""
        if self._seen.pop(command_id, None) is not None:
            self._save()

    def forget(self, undo: Undo) -> None:
        # The command was refused by its handler before changing anything: it
        # leaves no trace, not even its id.
        self._seen, raw = undo
        if raw is None:
            self._path.unlink(missing_ok=True)
        else:
            atomic_write(self._path, raw)
