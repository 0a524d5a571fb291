"""Files that survive a power cut: each one whole or not at all, owner-only.

The one home for small state and config files (arm state, command replay
cache, config, keys and certificates).

A file is written to a temporary name in the same directory, fsynced, then
renamed over the target, and the directory is fsynced so the rename itself is
durable. A directory made on the way is fsynced into its parent
(``make_dirs``). ``FileSet`` stages several files first and renames them only
when every one of them was written, in the order given (config last, so a
config never names a key that is not there yet); if a rename fails, the files
already replaced are put back.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OWNER_ONLY = 0o600


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(directory: Path, mode: int = 0o700) -> None:
    """``mkdir -p`` that survives a power cut: a directory made here is an entry in
    its parent, and only an fsync of the parent makes that entry durable (else a cut
    takes the directory away with every file fsynced inside it).

    ``mode`` is the last directory's, as ``Path.mkdir(parents=True)`` does."""
    missing = []
    at = directory
    while not at.is_dir():
        missing.append(at)
        at = at.parent
    for made in reversed(missing):
        made.mkdir(mode=mode if made == directory else 0o777, exist_ok=True)
        _fsync_dir(made.parent)


def _write_temp(path: Path, data: bytes, mode: int) -> Path:
    make_dirs(path.parent)
    for attempt in range(100):
        temp = path.with_name(f".{path.name}.tmp{os.getpid()}-{attempt}")
        try:
            # O_EXCL + mode at creation: the secret is never readable by others,
            # not even between open() and a later chmod().
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        except FileExistsError:
            continue
        try:
            os.fchmod(fd, mode)  # the umask may have removed bits we asked for
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            temp.unlink(missing_ok=True)
            raise
        os.close(fd)
        return temp
    raise FileExistsError(f"cannot create a temporary file next to {path}")


def owner_only_database(path: Path) -> None:
    """Create (or tighten) an SQLite file 0600 before SQLite opens it, whatever the umask.

    SQLite gives -wal and -shm the mode of the main file, so this one file
    decides for all three; files left by an older version are tightened too.
    """
    make_dirs(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, OWNER_ONLY)
    try:
        os.fchmod(fd, OWNER_ONLY)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(f"{path}{suffix}", OWNER_ONLY)


def atomic_write(path: Path, data: bytes | str, mode: int = OWNER_ONLY) -> Path:
    if isinstance(data, str):
        data = data.encode()
    temp = _write_temp(path, data, mode)
    try:
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


@dataclass
class FileSet:
    """Stage, then commit all or none."""

    _staged: list[tuple[Path, Path]] = field(default_factory=list)  # (temp, target)

    def add(self, path: Path, data: bytes | str, mode: int = OWNER_ONLY) -> None:
        if isinstance(data, str):
            data = data.encode()
        self._staged.append((_write_temp(path, data, mode), path))

    @property
    def targets(self) -> list[Path]:
        return [target for _, target in self._staged]

    def commit(self) -> list[Path]:
        backups: list[tuple[Path, Path | None]] = []  # (target, backup or None if new)
        try:
            for temp, target in self._staged:
                backup = None
                if target.exists():
                    backup = target.with_name(f".{target.name}.bak{os.getpid()}")
                    backup.unlink(missing_ok=True)
                    os.link(target, backup)
                backups.append((target, backup))
                os.replace(temp, target)
        except BaseException:
            for target, backup in reversed(backups):
                with contextlib.suppress(OSError):
                    if backup is not None:
                        os.replace(backup, target)
                    else:
                        target.unlink(missing_ok=True)
            self.discard()
            raise
        for directory in {target.parent for _, target in self._staged}:
            _fsync_dir(directory)
        for _, backup in backups:
            if backup is not None:
                backup.unlink(missing_ok=True)
        done = self.targets
        self._staged.clear()
        return done

    def discard(self) -> None:
        for temp, _ in self._staged:
            temp.unlink(missing_ok=True)
        self._staged.clear()


def read_json(path: Path) -> tuple[Any, Path | None]:
    """The file's JSON, or (None, None) if absent; an unreadable file is set aside.

    Returns (data, set_aside_as). A damaged state file must not stop the agent:
    it starts from the configured defaults and reports where the old file went.
    """
    try:
        return json.loads(path.read_bytes()), None
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError):
        aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
        with contextlib.suppress(OSError):
            path.rename(aside)
        return None, aside
