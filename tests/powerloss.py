"""A disk that loses power: a FUSE file system keeping every write in memory.

Every file's data and every directory's entries exist twice: as the
processes see them now, and as they were at their last ``fsync`` (files) or
``fsync`` of the directory (entries: a create, rename or unlink not followed by
an fsync of its directory is not on the disk). A power cut keeps only the
second: ``PowerLossDisk.cut()`` unmounts (the agent is SIGKILLed first), the
server writes what was fsynced to a state file and exits, and ``mount()``
serves that state again from a new server, with the kernel's caches gone
with the old mount.

The server runs in its own process (``python tests/powerloss.py MOUNTPOINT
STATE``) on mfusepy (ctypes bindings for libfuse 3, pure Python) and
``fusermount3`` (Debian package fuse3, in .ci/system-packages).

Use it as a fixture::

    def test_x(power_loss_disk):
        disk = power_loss_disk          # mounted, empty
        (disk.path / "data").mkdir()
        disk.settle()                   # what is there now is on the disk
        ...                             # run the agent on disk.path / "data"
        agent.stop(signal.SIGKILL)
        disk.cut()                      # drop everything not fsynced
        disk.mount()                    # what is left
"""

from __future__ import annotations

import errno
import os
import pickle
import shutil
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SETTLE_XATTR = "user.powerloss.settle"


# ---- the server ----------------------------------------------------------------


@dataclass(eq=False)
class Node:
    mode: int  # with S_IFDIR or S_IFREG
    data: bytearray = field(default_factory=bytearray)  # files: as seen now
    entries: dict[str, Node] = field(default_factory=dict)  # directories: as seen now
    synced_data: bytes = b""  # files: at the last fsync
    synced_entries: dict[str, Node] = field(default_factory=dict)  # dirs: at the last fsync
    mtime_ns: int = field(default_factory=time.time_ns)

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    def durable(self) -> tuple:
        """What a power cut leaves of this node and everything it durably names."""
        if self.is_dir:
            return ("d", self.mode, {n: c.durable() for n, c in self.synced_entries.items()})
        return ("f", self.mode, self.synced_data)

    @classmethod
    def restore(cls, saved: tuple) -> Node:
        kind, mode, content = saved
        if kind == "d":
            entries = {n: cls.restore(c) for n, c in content.items()}
            return cls(mode, entries=entries, synced_entries=dict(entries))
        return cls(mode, data=bytearray(content), synced_data=bytes(content))

    def settle(self) -> None:
        if self.is_dir:
            self.synced_entries = dict(self.entries)
            for child in self.entries.values():
                child.settle()
        else:
            self.synced_data = bytes(self.data)


def _operations(root: Node):
    from mfusepy import FuseOSError, Operations

    class PowerLossFS(Operations):
        use_ns = True

        def __init__(self) -> None:
            self.root = root
            self._mutex = threading.RLock()
            self.handles: dict[int, Node] = {}
            self.next_fh = 1

        # -- lookups
        def _walk(self, path: str) -> Node:
            node = self.root
            for part in [p for p in path.split("/") if p]:
                if not node.is_dir or part not in node.entries:
                    raise FuseOSError(errno.ENOENT)
                node = node.entries[part]
            return node

        def _parent(self, path: str) -> tuple[Node, str]:
            head, _, name = path.rstrip("/").rpartition("/")
            parent = self._walk(head or "/")
            if not parent.is_dir:
                raise FuseOSError(errno.ENOTDIR)
            return parent, name

        def _node(self, path: str, fh: int | None) -> Node:
            if fh and fh in self.handles:
                return self.handles[fh]
            return self._walk(path)

        def _handle(self, node: Node) -> int:
            fh = self.next_fh
            self.next_fh += 1
            self.handles[fh] = node
            return fh

        # -- metadata
        def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
            with self._mutex:
                node = self._node(path, fh)
                size = len(node.data) if not node.is_dir else 4096
                return {
                    "st_mode": node.mode,
                    "st_nlink": 2 if node.is_dir else 1,
                    "st_size": size,
                    "st_blocks": (size + 511) // 512,
                    "st_uid": os.getuid(),
                    "st_gid": os.getgid(),
                    "st_atime": node.mtime_ns,
                    "st_mtime": node.mtime_ns,
                    "st_ctime": node.mtime_ns,
                }

        def chmod(self, path: str, mode: int) -> int:
            with self._mutex:
                node = self._walk(path)
                node.mode = (node.mode & ~0o7777) | (mode & 0o7777)
            return 0

        def chown(self, path: str, uid: int, gid: int) -> int:
            return 0

        def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
            with self._mutex:
                self._walk(path).mtime_ns = times[1] if times else time.time_ns()
            return 0

        def statfs(self, path: str) -> dict[str, int]:
            return {
                "f_bsize": 4096,
                "f_frsize": 4096,
                "f_blocks": 1 << 20,
                "f_bfree": 1 << 19,
                "f_bavail": 1 << 19,
                "f_files": 1 << 16,
                "f_ffree": 1 << 15,
                "f_namemax": 255,
            }

        def setxattr(self, path: str, name: str, value: bytes, options: int, position: int = 0):
            if name != SETTLE_XATTR:
                raise FuseOSError(errno.ENOTSUP)
            with self._mutex:
                self.root.settle()
            return 0

        # -- directories
        def readdir(self, path: str, fh: int):
            with self._mutex:
                return [".", "..", *self._walk(path).entries]

        def mkdir(self, path: str, mode: int) -> int:
            with self._mutex:
                parent, name = self._parent(path)
                if name in parent.entries:
                    raise FuseOSError(errno.EEXIST)
                parent.entries[name] = Node(stat.S_IFDIR | (mode & 0o7777))
            return 0

        def rmdir(self, path: str) -> int:
            with self._mutex:
                parent, name = self._parent(path)
                node = self._walk(path)
                if node.entries:
                    raise FuseOSError(errno.ENOTEMPTY)
                del parent.entries[name]
            return 0

        def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
            with self._mutex:
                node = self._walk(path)
                node.synced_entries = dict(node.entries)
            return 0

        # -- files
        def create(self, path: str, mode: int, fi: Any = None) -> int:
            with self._mutex:
                parent, name = self._parent(path)
                node = parent.entries.get(name)
                if node is None:
                    node = Node(stat.S_IFREG | (mode & 0o7777))
                    parent.entries[name] = node
                return self._handle(node)

        def open(self, path: str, flags: int) -> int:
            with self._mutex:
                node = self._walk(path)
                if flags & os.O_TRUNC:
                    del node.data[:]
                return self._handle(node)

        def release(self, path: str, fh: int) -> int:
            with self._mutex:
                self.handles.pop(fh, None)
            return 0

        def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
            with self._mutex:
                return bytes(self._node(path, fh).data[offset : offset + size])

        def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
            with self._mutex:
                buf = self._node(path, fh).data
                if offset > len(buf):
                    buf.extend(b"\0" * (offset - len(buf)))
                buf[offset : offset + len(data)] = data
                return len(data)

        def truncate(self, path: str, length: int, fh: int | None = None) -> int:
            with self._mutex:
                buf = self._node(path, fh).data
                if length < len(buf):
                    del buf[length:]
                else:
                    buf.extend(b"\0" * (length - len(buf)))
            return 0

        def fallocate(self, path: str, mode: int, offset: int, size: int, fh: int) -> int:
            with self._mutex:
                buf = self._node(path, fh).data
                if mode == 0 and offset + size > len(buf):
                    buf.extend(b"\0" * (offset + size - len(buf)))
            return 0

        def fsync(self, path: str, datasync: int, fh: int) -> int:
            with self._mutex:
                node = self._node(path, fh)
                node.synced_data = bytes(node.data)
            return 0

        def unlink(self, path: str) -> int:
            with self._mutex:
                parent, name = self._parent(path)
                if name not in parent.entries:
                    raise FuseOSError(errno.ENOENT)
                del parent.entries[name]
            return 0

        def rename(self, old: str, new: str) -> int:
            with self._mutex:
                src_parent, src_name = self._parent(old)
                dst_parent, dst_name = self._parent(new)
                node = src_parent.entries.get(src_name)
                if node is None:
                    raise FuseOSError(errno.ENOENT)
                del src_parent.entries[src_name]
                dst_parent.entries[dst_name] = node
            return 0

    return PowerLossFS()


def serve(mountpoint: str, state: str) -> None:
    """Serve ``state`` (what the last cut left, or an empty disk) until unmounted."""
    from mfusepy import FUSE

    path = Path(state)
    root = (
        Node.restore(pickle.loads(path.read_bytes()))
        if path.exists()
        else Node(stat.S_IFDIR | 0o755)
    )
    ops = _operations(root)
    FUSE(ops, mountpoint, foreground=True, nothreads=True, fsname="powerloss")
    # Unmounted: what was fsynced is all that is left.
    temp = path.with_name(path.name + ".tmp")
    temp.write_bytes(pickle.dumps(root.durable()))
    os.replace(temp, path)


# ---- the test side ---------------------------------------------------------------


class PowerLossDisk:
    def __init__(self, workdir: Path):
        self.path = workdir / "disk"
        self.state = workdir / "disk.state"
        self.log = workdir / "disk.log"
        self.server: subprocess.Popen | None = None
        self.cuts = 0
        self.path.mkdir(parents=True, exist_ok=True)

    def mount(self, timeout: float = 20.0) -> PowerLossDisk:
        with open(self.log, "ab") as log:
            self.server = subprocess.Popen(
                [sys.executable, __file__, str(self.path), str(self.state)],
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + timeout
        while not os.path.ismount(self.path):
            if self.server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"power-loss disk did not mount: {self.log.read_text()[-2000:]}")
            time.sleep(0.02)
        return self

    def settle(self) -> None:
        """Everything written so far is on the disk (the installer's files, before a test)."""
        os.setxattr(self.path, SETTLE_XATTR, b"1")

    def cut(self, timeout: float = 30.0) -> None:
        """Power cut: whatever was not fsynced, file data and directory entries, is gone.

        Kill the processes using the disk first (an agent is SIGKILLed: that is the crash).
        """
        self.cuts += 1
        self._unmount(timeout)

    def _unmount(self, timeout: float) -> None:
        if self.server is None:
            return
        if os.path.ismount(self.path):
            subprocess.run([fusermount(), "-u", "-z", str(self.path)], check=False)
        try:
            self.server.wait(timeout)
        except subprocess.TimeoutExpired:
            self.server.kill()
            self.server.wait(10)
            raise
        finally:
            self.server = None

    def close(self) -> None:
        self._unmount(30.0)


def fusermount() -> str:
    found = shutil.which("fusermount3") or shutil.which("fusermount")
    if not found:
        raise RuntimeError("fusermount3 is missing: install the Debian package fuse3")
    return found


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2])
