"""A settings bundle on probation, on disk: its watch window survives restarts.

After a settings bundle is taken (the ``config_update`` command, or
``shaobing config install`` from a USB stick) its watch is kept in
``config-watch.json`` beside the outbox:

- ``version``: the bundle's; ``scope``: what it changed (agent/settings_faults.py);
- ``restart``: the change waits for a restart. Its window (``watch_s`` long)
  then begins at the first start on the new file, so the whole window is
  spent running the new settings; a live change's window begins at once;
- ``until``, ``starts``, ``max_starts``: ``shaobing run`` calls ``on_start``
  before it builds the agent: at the ``updates.max_starts``-th start past the
  first within the window the config file before the bundle (``<name>.prev``,
  kept by ConfigEditor) is put back, the bundle's file kept as
  ``<name>.failed``, and the agent starts on the old settings; that rollback
  is reported (``crash_loop``) once the agent runs;
- ``baseline``: the faults open before the change (None until taken: at the
  first start for a change that waited for a restart).

The running agent's in-service watch (agent/settings_probation.py) reads and
ends it: rolled back on an attributable fault, or ``confirmed`` once the window
passed with the agent running.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from shaobing.agent.config_bundle import AppliedVersions
from shaobing.agent.update_watch import count_start, crash_loop
from shaobing.core.atomic import atomic_write, read_json


class ConfigWatch:
    def __init__(self, state_dir: Path, now=time.time):
        self.path = state_dir / "config-watch.json"
        self.versions = AppliedVersions(state_dir / "config-bundle.json")
        self._now = now

    def _read(self) -> dict[str, Any]:
        data, _ = read_json(self.path)
        return data if isinstance(data, dict) else {}

    def _write(self, data: dict[str, Any]) -> None:
        atomic_write(self.path, json.dumps(data).encode())

    def begin(
        self,
        version: int,
        watch_s: float,
        max_starts: int,
        *,
        scope: dict[str, Any] | None = None,
        restart: bool = True,
        baseline: list[str] | None = None,
    ) -> None:
        """Put settings bundle ``version`` on probation (replaces any watch under way)."""
        now = self._now()
        self._write(
            {
                "version": version,
                "watch_s": watch_s,
                "restart": restart,
                "until": None if restart else now + watch_s,
                "starts": 0,
                "max_starts": max_starts,
                "scope": scope or {},
                "baseline": baseline,
            }
        )

    def current(self) -> dict[str, Any] | None:
        """The watch under way, or None."""
        data = self._read()
        return data if "version" in data else None

    def update(self, **fields: Any) -> None:
        data = self._read()
        if "version" in data:
            self._write({**data, **fields})

    def end(self) -> None:
        """The watch is over (confirmed or rolled back); a report waiting stays."""
        data = self._read()
        self._write({k: v for k, v in data.items() if k == "report"})

    def on_start(self, config_path: Path) -> bool:
        """Count this start; True when the previous config was put back (reload it)."""
        data = self._read()
        if "version" not in data:
            return False
        now = self._now()
        if data.get("until") is None:
            # The first start on a file that waited for a restart: its window begins.
            data["until"] = now + float(data.get("watch_s", 0))
        counted = count_start(data, now)
        if counted is None:
            # The window passed while the agent was down: the running agent confirms it.
            return False
        data = counted
        prev = config_path.with_name(config_path.name + ".prev")
        if not crash_loop(data, data.get("max_starts", 3)) or not prev.exists():
            self._write(data)
            return False
        failed = config_path.with_name(config_path.name + ".failed")
        atomic_write(failed, config_path.read_bytes())
        atomic_write(config_path, prev.read_bytes())
        os.sync()
        self.versions.rolled_back()
        self._write(
            {
                "report": {
                    "target": "config",
                    "verdict": "crash_loop",
                    "message": f"{data['starts'] - 1} agent starts within the watch window of "
                    f"settings bundle v{data['version']}; its file is kept as {failed.name}",
                    "version": data["version"],
                }
            }
        )
        return True

    def take_report(self) -> dict[str, Any] | None:
        data = self._read()
        report = data.pop("report", None)
        if report is not None:
            self._write(data)
        return report
