"""Reading and changing the running config: THE one config-write path.

The ``get_config``/``set_config`` commands use it, and so will the
commissioning console and signed settings bundles: ``ConfigEditor.get``,
``ConfigEditor.change`` (an RFC 7386 merge patch) and ``ConfigEditor.rollback``.
A change is validated whole, persisted (the file before it kept as
``<name>.prev``), then applied live when it touches only ``LIVE_SECTIONS``;
otherwise it waits, whole, for a restart.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import yaml

from shaobing.agent.command_envelope import CommandError
from shaobing.agent.config import Config, ConfigError, load_config, validate_config
from shaobing.agent.detection.config import cameras_change_live
from shaobing.agent.protected_settings import protected_changes
from shaobing.core.atomic import atomic_write
from shaobing.core.redaction import redact_data

# Sections a running agent can take over without restarting; the others
# (device, site, zones, inputs, outputs, gpio, mqtt, storage, health) are
# read once by the constructors of drivers, outbox and uplink. Cameras are
# live too when only their zones, masks and filters change (the console).
LIVE_SECTIONS = ("arming", "linkage", "control", "updates")


class ConfigChangeError(CommandError):
    """A refused read or change; ``code`` is the command error code (docs/mqtt.md)."""


class ConfigTarget(Protocol):
    """What runs the config (agent.runtime.Agent)."""

    config: Config

    def apply_config(self, new: Config) -> list[str]: ...


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge, null deletes (the field returns to its default), else replace."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def config_data(config: Config) -> dict[str, Any]:
    return config.model_dump(mode="json", exclude_defaults=True)


def redact(data: dict[str, Any]) -> dict[str, Any]:
    return redact_data(data)


def _problems(problems: list) -> list[dict]:
    return [{"path": p.path, "message": p.message} for p in problems]


class ConfigEditor:
    def __init__(
        self,
        target: ConfigTarget,
        config_path: Path | None,
        now: Callable[[], float] = time.time,
    ):
        self._target = target
        self._path = config_path
        self._now = now
        self._pending: Config | None = None  # written to the file, waiting for a restart
        self.pending_sections: list[str] = []

    @property
    def effective(self) -> Config:
        """The config the file holds: a change waiting for a restart, else the running one."""
        return self._pending or self._target.config

    def get(self, sections: list[str] | None = None) -> dict[str, Any]:
        data = redact(config_data(self._target.config))
        if sections:
            unknown = [s for s in sections if s not in Config.model_fields]
            if unknown:
                raise ConfigChangeError("bad_args", f"no such section: {', '.join(unknown)}")
            data = {s: data.get(s) for s in sections}
        return {"config": data, "restart_required": list(self.pending_sections)}

    def change(self, patch: dict[str, Any], by: str) -> dict[str, Any]:
        base = self._pending or self._target.config
        merged = merge_patch(config_data(base), patch)
        protected = protected_changes(
            patch, merged if isinstance(merged, dict) else {}, config_data(base)
        )
        if protected:
            raise ConfigChangeError(
                "protected_key",
                f"only the box may change {', '.join(protected)} (provisioning or the file)",
                [{"path": p, "message": why} for p, why in protected.items()],
            )
        problems: list = []
        new = validate_config(merged, {}, problems) if isinstance(merged, dict) else None
        if new is None:
            details = _problems(problems)
            raise ConfigChangeError("invalid_config", f"{len(details)} problem(s)", details)
        return self._install(new, by)

    def rollback(self, by: str) -> dict[str, Any]:
        return self._install(self._previous(), by)

    def _install(self, new: Config, by: str) -> dict[str, Any]:
        running = self._target.config
        changed = [s for s in Config.model_fields if getattr(new, s) != getattr(running, s)]
        restart = [
            s
            for s in changed
            if s not in LIVE_SECTIONS
            and not (s == "cameras" and cameras_change_live(running.cameras, new.cameras))
        ]
        persisted = self._persist(new, by)
        if restart:
            # Half a config is worse than the old one: nothing is applied
            # until the restart takes the whole file.
            self._pending, self.pending_sections = new, restart
            applied: list[str] = []
        else:
            self._pending, self.pending_sections = None, []
            applied = self._target.apply_config(new)
        return {
            "changed": changed,
            "applied": applied,
            "restart_required": restart,
            "persisted": persisted,
        }

    def _previous(self) -> Config:
        if self._path is None:
            raise ConfigChangeError("not_supported", "the agent runs without a config file")
        prev = self._path.with_name(self._path.name + ".prev")
        if not prev.exists():
            raise ConfigChangeError("no_previous", "there is no previous config to go back to")
        try:
            return load_config(prev)
        except ConfigError as exc:
            raise ConfigChangeError(
                "invalid_config", "the previous config is invalid", _problems(exc.problems)
            ) from None

    def _persist(self, new: Config, by: str) -> bool:
        path = self._path
        if path is None:
            return False
        header = (
            f"# Written by {by} at "
            f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(self._now()))}.\n"
            f"# The file before it is kept as {path.name}.prev (set_config rollback).\n"
        )
        text = header + yaml.safe_dump(
            config_data(new), allow_unicode=True, sort_keys=False, default_flow_style=False
        )
        if path.exists():
            atomic_write(path.with_name(path.name + ".prev"), path.read_bytes())
        atomic_write(path, text.encode("utf-8"))  # 0600: it holds the broker password
        return True
