"""Small files replaced whole: write a temporary file, fsync, rename, fsync the directory.

A power cut leaves either the old or the new file, never a torn one; the
rename is atomic on the same file system (ext4 and f2fs on an SD card).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


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
