"""Keeping an installer's answers so the same box can be redone without retyping.

Every run that gets past the interview leaves ``provisioning-answers.yaml``
beside the report (owner-only). A late failure (a write error, a failed
self-test) therefore never costs the installer the 30 answers: the file is a
valid ``shaobing provision --answers FILE``, and an interactive re-run offers
its values as the defaults. Secrets (passwords, URL credentials) are masked,
never stored; the header says which and that they must be filled in again.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import yaml

from shaobing.agent.config import Problem
from shaobing.core.atomic import atomic_write
from shaobing.core.redaction import MASK, redact_data

ANSWERS_NAME = "provisioning-answers.yaml"
# The outbox, models and status file need room; less than this and the first
# camera clip or model fetch fails on a box already declared working.
MIN_FREE_BYTES = 64 * 1024 * 1024
CONFIG_MIN_FREE_BYTES = 1024 * 1024  # keys, config and the report

HEADER = (
    "# Answers of the last `shaobing provision` on this box, kept so it can be redone with\n"
    "#   shaobing provision --answers {path}\n"
    "# or interactively (the answers below are offered as defaults).\n"
)
MASKED_NOTE = "# Secrets are not stored: fill in every value shown as {mask} before re-using.\n"


def _has_mask(data: Any) -> bool:
    if isinstance(data, dict):
        return any(_has_mask(v) for v in data.values())
    if isinstance(data, list):
        return any(_has_mask(v) for v in data)
    return isinstance(data, str) and MASK in data


def render_answers(data: dict[str, Any], path: Path) -> str:
    safe = redact_data(data)
    header = HEADER.format(path=path)
    if _has_mask(safe):
        header += MASKED_NOTE.format(mask=MASK)
    return header + yaml.safe_dump(safe, allow_unicode=True, sort_keys=False, width=100)


def save_answers(data: dict[str, Any], directory: Path) -> Path:
    """Write the answers (secrets masked) owner-only into ``directory``; returns the path."""
    path = directory / ANSWERS_NAME
    return atomic_write(path, render_answers(data, path))


def save_answers_somewhere(data: dict[str, Any], directories: list[Path]) -> Path | None:
    """The first of ``directories`` that takes the file (a failed run may lack the first)."""
    for directory in directories:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            return save_answers(data, directory)
        except OSError:
            continue
    return None


def is_kept_file(answers_file: Path | None, config_dir: Path) -> bool:
    """Whether ``--answers`` names the file this box keeps (re-run from the kept answers)."""
    if answers_file is None:
        return False
    try:
        return answers_file.resolve() == (config_dir / ANSWERS_NAME).resolve()
    except OSError:
        return False


def _without_masked(data: Any) -> Any:
    # A masked secret must be asked again, never offered as "***".
    if isinstance(data, dict):
        return {
            k: _without_masked(v) for k, v in data.items() if not (isinstance(v, str) and MASK in v)
        }
    if isinstance(data, list):
        return [_without_masked(v) for v in data]
    return data


def previous_answers(config_dir: Path) -> dict[str, Any]:
    """The answers of the last run on this box, or {} (none, unreadable, or not a mapping)."""
    try:
        data = yaml.safe_load((config_dir / ANSWERS_NAME).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    return _without_masked(data) if isinstance(data, dict) else {}


def state_dir_problems(state_dir: Path, min_free: int = MIN_FREE_BYTES) -> list[Problem]:
    """Whether the agent can create and fill ``state_dir``: checked before anything is written."""
    return dir_problems(state_dir, "--state-dir", min_free)


def dir_problems(directory: Path, flag: str, min_free: int = MIN_FREE_BYTES) -> list[Problem]:
    """Whether ``directory`` exists or can be made, is writable and has ``min_free`` bytes."""
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return [Problem(flag, f"{existing} is not a directory")]
    if not os.access(existing, os.W_OK | os.X_OK):
        return [
            Problem(flag, f"cannot write in {existing} (run with sudo, or choose another {flag})")
        ]
    free = shutil.disk_usage(existing).free
    if free < min_free:
        return [
            Problem(
                flag,
                f"only {free // (1024 * 1024)} MiB free on {existing}; the agent needs at least "
                f"{min_free // (1024 * 1024)} MiB there",
            )
        ]
    return []
