"""What a box runs: its model and its config, by version (status.health, registration).

The config version is the first 16 hex digits of the SHA-256 of the canonical
JSON of the effective config (defaults left out), so the county can tell two
boxes run the same settings without reading them, and see a change land;
``config_bundle`` is the version of the settings bundle in service.
"""

from __future__ import annotations

import hashlib
from typing import Any

from shaobing.agent.config import Config
from shaobing.agent.config_bundle import AppliedVersions
from shaobing.agent.config_commands import config_data
from shaobing.agent.detection.model_store import ModelStore
from shaobing.core.signing import canonical


def config_version(config: Config) -> str:
    return hashlib.sha256(canonical(config_data(config))).hexdigest()[:16]


def installed_model(config: Config) -> dict[str, Any] | None:
    """The model the agent starts with: an installed bundle, else ``detector.model``."""
    if not any(cam.enabled for cam in config.cameras):
        return None
    slot = ModelStore(config.storage.path.parent / "models").active()
    if slot is not None:
        return slot.describe()
    return {"name": config.detector.model, "sha256": None, "bundle_version": None, "slot": None}


def config_bundle(config: Config) -> int | None:
    """The settings bundle whose settings the box runs (None: none taken, or rolled back)."""
    return AppliedVersions(config.storage.path.parent / "config-bundle.json").in_service()


def versions(config: Config, model: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "model": model,
        "config": config_version(config),
        "config_bundle": config_bundle(config),
    }
