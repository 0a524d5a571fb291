"""Whether a command cut by a crash had its durable effect (agent/command_once.py).

Before a command runs, ``before`` notes what will tell afterwards: the arm
state of its zones, the config file's digest. After a crash, ``applied``
compares: it returns the result the command had (marked ``recovered``) when
its effect is on disk, or None when it never happened and the command may
simply run.

- ``arm``/``disarm``: the arm state file records, with each override, the id
  of the command that set it (``Arming.changed_by``), written atomically
  with the override: the id is there exactly when the effect is. Its
  ``status.arming`` events, which the crash may have cut off, are announced
  again (``announce``): a platform may see one twice, never miss it.
- ``set_config``: the file's digest differs from the one noted before.
- ``restart``: the process has restarted, which was the effect.
- the others have no effect that outlives the process (``ping``,
  ``get_config``, ``snapshot``: reads; ``siren``: outputs are reset at start;
  ``acknowledge``: open alarms live in memory), so they run again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shaobing.agent.arming import Arming

# The commands whose effect ``applied`` can find; the others simply run again.
TRACKED = frozenset({"arm", "disarm", "set_config", "restart"})


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


Announce = Callable[[dict[str, dict], str], None]  # (per-zone outcome, command id)


class CommandEffects:
    def __init__(self, arming: Arming, config_path: Path | None, announce: Announce | None = None):
        self._arming = arming
        self._config_path = config_path
        self._announce = announce

    def before(self, command: str, args: Any) -> dict:
        if command in ("arm", "disarm"):
            known = self._arming.zone_ids
            zones = known if args.zones == "all" else [z for z in args.zones if z in known]
            return {"zones": {z: self._arming.state(z).state for z in zones}}
        if command == "set_config" and self._config_path is not None:
            return {"config_sha256": _digest(self._config_path)}
        return {}

    def applied(self, command: str, command_id: str, before: dict) -> dict | None:
        if command in ("arm", "disarm"):
            was: dict[str, str] = before.get("zones") or {}
            if not any(self._arming.changed_by(z) == command_id for z in was):
                return None
            zones = {}
            for zone, state in was.items():
                now = self._arming.state(zone)
                zones[zone] = {**now.as_dict(), "changed": now.state != state}
            if self._announce is not None:
                self._announce(zones, command_id)
            return {"zones": zones, "recovered": True}
        if command == "set_config" and self._config_path is not None:
            if _digest(self._config_path) == before.get("config_sha256"):
                return None
            return {"persisted": True, "recovered": True}
        if command == "restart":
            return {"restarting": True, "recovered": True}
        return None
