"""Taking a settings bundle: the one sequence the ``config_update`` command and
``shaobing config install`` (USB stick) share.

verify (signature by a county key of ``control.command_keys``) -> version
(newer than the last taken, so a recorded bundle cannot be replayed) ->
``ConfigEditor.change`` (protected settings refused, the merged config
validated whole, written atomically owner-only with ``<name>.prev`` kept) ->
recorded -> on probation (agent/config_watch.py, agent/settings_probation.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shaobing.agent.config import Config, load_config
from shaobing.agent.config_bundle import AppliedVersions, ConfigBundleHeader, verify
from shaobing.agent.config_commands import ConfigEditor
from shaobing.agent.config_watch import ConfigWatch
from shaobing.agent.settings_faults import scope_of
from shaobing.core.signing import Keyring
from shaobing.models.bundle import BundleError


class StaleVersion(BundleError):
    def __init__(self, version: int, current: int):
        super().__init__(
            "stale_version", f"settings bundle version {version}; version {current} is in place"
        )
        self.version, self.current = version, current


def take(
    doc: Any, keyring: Keyring, editor: ConfigEditor, versions: AppliedVersions
) -> tuple[ConfigBundleHeader, dict[str, Any]]:
    """Verify and write settings bundle ``doc``; ``BundleError`` or ``ConfigChangeError``."""
    if not isinstance(doc, dict):
        raise BundleError("bad_bundle", "a settings bundle is a JSON object")
    header = verify(doc, keyring)
    if header.version <= versions.last():
        raise StaleVersion(header.version, versions.last())
    result = editor.change(header.patch, f"settings bundle v{header.version}")
    versions.record(header.version)
    return header, result


class _OnDisk:
    """The config in the file, for an install while the agent may be stopped or running:
    nothing is applied live, the agent takes the whole file at its next start."""

    def __init__(self, config: Config):
        self.config = config

    def apply_config(self, new: Config) -> list[str]:
        self.config = new  # what the file holds now; nothing runs it until the restart
        return []


def install(bundle: Path, config_path: Path) -> dict[str, Any]:
    """``shaobing config install``: ``ConfigError`` (the file), ``KeyFileError`` (the keys),
    ``OSError``/``ValueError`` (the bundle file), ``BundleError``, ``ConfigChangeError``."""
    config = load_config(config_path)
    doc = json.loads(bundle.read_text(encoding="utf-8"))
    keyring = Keyring.load(config.control.command_keys)
    watch = ConfigWatch(config.storage.path.parent)
    editor = ConfigEditor(_OnDisk(config), config_path)
    header, result = take(doc, keyring, editor, watch.versions)
    updates = editor.effective.updates
    watch.begin(
        header.version,
        updates.watch_s,
        updates.max_starts,
        scope=scope_of(config, editor.effective),
        restart=True,
    )
    return {**result, "version": header.version, "watch_s": updates.watch_s}
