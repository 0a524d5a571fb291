"""Installed model bundles in the data dir: which is active, which came before.

Layout under ``<data dir>/models/``::

    slots/<version>-<sha256[:12]>/model.tflite   the model (checked sha256)
    slots/<version>-<sha256[:12]>/bundle.json    its signed header, as received
    state.json                                    {"active", "previous", "watch"}

``state.json`` is the one switch: it is replaced whole (core/atomic.py: temp
file, fsync, rename, fsync of the directory), so after a power cut the box
runs either the old or the new model, never half of one. ``active: null``
means the configured ``detector.model``. Only the active and previous slots
are kept. ``watch`` (from activation until confirmed) counts agent starts
durably, so a model that makes the agent crash-loop is found across restarts.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shaobing.agent.update_watch import count_start
from shaobing.core.atomic import atomic_write, read_json
from shaobing.models.bundle import MODEL_MEMBER, VerifiedBundle
from shaobing.models.manifest import ModelManifest


@dataclass(frozen=True)
class Slot:
    name: str
    path: Path  # the model file
    bundle: dict[str, Any]  # bundle.json

    @property
    def manifest(self) -> ModelManifest:
        return ModelManifest.model_validate(self.bundle["header"]["manifest"])

    def describe(self) -> dict[str, Any]:
        header = self.bundle["header"]
        return {
            "name": header["manifest"]["name"],
            "sha256": header["manifest"]["sha256"],
            "bundle_version": header["version"],
            "slot": self.name,
        }


def slot_name(bundle: VerifiedBundle) -> str:
    return f"{bundle.header.version}-{bundle.manifest.sha256[:12]}"


class ModelStore:
    def __init__(self, root: Path):
        self.root = root
        self.slots = root / "slots"
        self.state_path = root / "state.json"
        self.set_aside: Path | None = None

    def state(self) -> dict[str, Any]:
        data, aside = read_json(self.state_path)
        if aside is not None:
            self.set_aside = aside
        if not isinstance(data, dict):
            data = {}
        return {
            "active": data.get("active"),
            "previous": data.get("previous"),
            "watch": data.get("watch"),
        }

    def _write(self, state: dict[str, Any]) -> None:
        atomic_write(self.state_path, json.dumps(state, sort_keys=True).encode(), mode=0o644)

    def slot(self, name: str | None) -> Slot | None:
        if not name:
            return None
        directory = self.slots / name
        try:
            bundle = json.loads((directory / "bundle.json").read_bytes())
        except (OSError, ValueError):
            return None
        return Slot(name, directory / MODEL_MEMBER, bundle)

    def active(self) -> Slot | None:
        return self.slot(self.state()["active"])

    def previous(self) -> Slot | None:
        return self.slot(self.state()["previous"])

    def staging_model(self) -> Path:
        """Where a bundle's model is extracted before it has a slot."""
        return self.root / "incoming" / MODEL_MEMBER

    def add(self, bundle: VerifiedBundle, model: Path) -> Slot:
        """Move a checked model into its slot (not active yet)."""
        name = slot_name(bundle)
        directory = self.slots / name
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write(directory / "bundle.json", json.dumps(bundle.signed).encode(), mode=0o644)
        os.replace(model, directory / MODEL_MEMBER)
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return Slot(name, directory / MODEL_MEMBER, bundle.signed)

    def activate(self, slot: Slot, watch_s: float, now: float | None = None) -> None:
        state = self.state()
        now = time.time() if now is None else now
        previous = state["active"] if state["active"] != slot.name else state["previous"]
        self._write(
            {
                "active": slot.name,
                "previous": previous,
                "watch": {"since": now, "until": now + watch_s, "starts": 0},
            }
        )
        self._prune()

    def count_start(self, now: float | None = None) -> dict[str, Any] | None:
        """Called once per agent start: the watch with this start counted, or None.

        A window that ran out while the agent was stopped ends here: the model served
        through it, and later restarts are not its fault.
        """
        state = self.state()
        watch = state["watch"]
        if not watch:
            return None
        watch = count_start(watch, time.time() if now is None else now)
        self._write({**state, "watch": watch})
        return watch

    def confirm(self) -> None:
        state = self.state()
        if state["watch"]:
            self._write({**state, "watch": None})

    def rollback(self) -> tuple[str | None, str | None]:
        """Back to the previous model: returns (failed slot, now active slot)."""
        state = self.state()
        failed, back = state["active"], state["previous"]
        self._write({"active": back, "previous": None, "watch": None, "failed": failed})
        self._prune(keep_failed=failed)
        return failed, back

    def _prune(self, keep_failed: str | None = None) -> None:
        state = self.state()
        keep = {state["active"], state["previous"], keep_failed}
        if not self.slots.is_dir():
            return
        for directory in self.slots.iterdir():
            if directory.name not in keep:
                with contextlib.suppress(OSError):
                    shutil.rmtree(directory)
