"""``--install-service``: the systemd unit, the service user, and file ownership.

Commands go through an injectable ``run`` so tests check what would be done
without a systemd; on a Pi this runs as root (sudo).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path

from shaobing.core.atomic import atomic_write

USER = "shaobing"
GROUPS = ("gpio", "dialout", "video")
UNIT_NAME = "shaobing.service"


def unit_template() -> str:
    source = Path(__file__).resolve().parents[1] / "systemd" / UNIT_NAME
    if source.exists():  # editable install / source checkout
        return source.read_text()
    return resources.files("shaobing.provisioning").joinpath(UNIT_NAME).read_text()


def shaobing_command() -> str:
    """The `shaobing` entry point of the running installation (its venv)."""
    beside = Path(sys.executable).with_name("shaobing")
    return str(beside) if beside.exists() else (shutil.which("shaobing") or str(beside))


def render_unit(command: str | None = None) -> str:
    return unit_template().replace("@SHAOBING@", command or shaobing_command())


def install_service(
    config_dir: Path,
    state_dir: Path,
    *,
    root: Path = Path("/"),
    run: Callable[[Sequence[str]], object] | None = None,
    command: str | None = None,
) -> tuple[Path, list[list[str]]]:
    """Write the unit, create the user, hand it the files, enable and start."""

    def default_run(argv: Sequence[str]) -> object:
        return subprocess.run(list(argv), check=True)

    run = run or default_run
    unit_path = root / "etc" / "systemd" / "system" / UNIT_NAME
    unit_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(unit_path, render_unit(command), mode=0o644)
    commands: list[list[str]] = [
        # --system: no login, no home; existing user is fine (re-provisioning).
        [
            "sh",
            "-c",
            f"id -u {USER} >/dev/null 2>&1 || useradd --system --no-create-home "
            f"--shell /usr/sbin/nologin {USER}",
        ],
        # Groups missing on a non-Pi OS image are skipped rather than fatal.
        [
            "sh",
            "-c",
            " ; ".join(f"getent group {g} >/dev/null && usermod -aG {g} {USER}" for g in GROUPS)
            + " ; true",
        ],
        ["chown", "-R", f"{USER}:{USER}", str(config_dir), str(state_dir)],
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", "--now", UNIT_NAME],
    ]
    for argv in commands:
        run(argv)
    return unit_path, commands
