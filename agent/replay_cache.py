"""Command ids already executed, kept on disk until their command expires.

A command id is recorded as used just before it executes, persisted, so a
command is executed at most once, across restarts too: a retained or re-sent
``restart`` cannot loop the box.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

from shaobing.agent.command_envelope import CommandError
from shaobing.core.atomic import atomic_write, read_json

log = logging.getLogger("shaobing.control")

REPLAY_CACHE_MAX = 4096

Undo = tuple[dict[str, int], bytes | None]


class ReplayCache:
    def __init__(self, path: Path, now: Callable[[], float], max_skew_s: Callable[[], float]):
        self._path = path
        self._now = now
        self._max_skew_s = max_skew_s  # read at each use: the control section can change live
        self._seen = self._load()

    def __contains__(self, command_id: str) -> bool:
        return command_id in self._seen

    def _load(self) -> dict[str, int]:
        data, aside = read_json(self._path)
        if aside:
            log.error("command id cache was unreadable", extra={"fields": {"kept_as": str(aside)}})
        if isinstance(data, dict) and isinstance(data.get("seen"), dict):
            return {k: v for k, v in data["seen"].items() if isinstance(v, int)}
        return {}

    def remember(self, command_id: str, expires_ms: int) -> Undo:
        """Record the id before executing; returns what ``forget`` needs to undo it."""
        undo = (dict(self._seen), self._path.read_bytes() if self._path.exists() else None)
        now_ms = int(self._now() * 1000)
        skew_ms = int(self._max_skew_s() * 1000)
        # An id whose command has expired can no longer be replayed successfully.
        self._seen = {k: v for k, v in self._seen.items() if v + skew_ms >= now_ms}
        if len(self._seen) >= REPLAY_CACHE_MAX:
            raise CommandError("busy", "too many recent commands; retry later")
        self._seen[command_id] = expires_ms
        atomic_write(self._path, json.dumps({"v": 1, "seen": self._seen}).encode())
        return undo

    def forget(self, undo: Undo) -> None:
        # The command was refused by its handler before changing anything: it
        # leaves no trace, not even its id.
        self._seen, raw = undo
        if raw is None:
            self._path.unlink(missing_ok=True)
        else:
            atomic_write(self._path, raw)
