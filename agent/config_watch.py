"""A settings bundle on probation: a config that makes the agent crash-loop is undone.

After a ``config_update`` the watch (``config-watch.json`` beside the outbox)
counts agent starts within ``updates.watch_s``. ``shaobing run`` calls
``on_start`` before it builds the agent: at the ``updates.max_starts``-th start
past the first within the window the config file before the bundle
(``<name>.prev``, kept by ConfigEditor) is put back, the bundle's file kept as
``<name>.failed``, and the agent starts on the old settings; the rollback is
reported as ``status.update`` (``target: config``, ``rolled_back``,
``crash_loop``) once the agent runs. A window that ran out ends the watch.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from shaobing.core.atomic import atomic_write, read_json


class ConfigWatch:
    def __init__(self, state_dir: Path, now=time.time):
        self.path = state_dir / "config-watch.json"
        self._now = now

    def _read(self) -> dict[str, Any]:
        data, _ = read_json(self.path)
        return data if isinstance(data, dict) else {}

    def _write(self, data: dict[str, Any]) -> None:
        atomic_write(self.path, json.dumps(data).encode())

    def begin(self, version: int, watch_s: float, max_starts: int) -> None:
        now = self._now()
        self._write(
            {"version": version, "until": now + watch_s, "starts": 0, "max_starts": max_starts}
        )

    def on_start(self, config_path: Path) -> bool:
        """Count this start; True when the previous config was put back (reload it)."""
        data = self._read()
        if "until" not in data:
            return False
        if self._now() >= data["until"]:
            self._write({k: v for k, v in data.items() if k == "report"})
            return False
        data["starts"] = int(data.get("starts", 0)) + 1
        prev = config_path.with_name(config_path.name + ".prev")
        if data["starts"] <= data.get("max_starts", 3) or not prev.exists():
            self._write(data)
            return False
        failed = config_path.with_name(config_path.name + ".failed")
        atomic_write(failed, config_path.read_bytes())
        atomic_write(config_path, prev.read_bytes())
        os.sync()
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
