"""The device end of a virtual serial line, reachable by the agent as a pyserial URL.

``PtyLine``: a pseudo-terminal; the agent opens the slave (``/dev/pts/N``)
exactly as it would open ``/dev/ttyUSB0``. ``TcpLine``: a loopback listener the
agent reaches as ``socket://127.0.0.1:PORT``, like a serial device server.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
import tty
from typing import Protocol


class Line(Protocol):
    url: str

    def read(self, timeout: float) -> bytes:
        """Whatever arrived within ``timeout`` (b"" if nothing)."""
        ...

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class PtyLine:
    def __init__(self) -> None:
        self._master, self._slave = os.openpty()
        # Raw mode before the agent opens it: no echo, no CR/LF translation,
        # binary frames pass untouched.
        tty.setraw(self._slave)
        tty.setraw(self._master)
        self.url = os.ttyname(self._slave)
        self._closed = False

    def fileno(self) -> int:
        return self._master

    def read(self, timeout: float) -> bytes:
        if self._closed:
            return b""
        r, _, _ = select.select([self._master], [], [], timeout)
        if not r:
            return b""
        try:
            return os.read(self._master, 4096)
        except OSError:  # EIO while the agent has the slave closed
            return b""

    def write(self, data: bytes) -> None:
        if not self._closed:
            with contextlib.suppress(OSError):
                os.write(self._master, data)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            os.close(self._master)
            os.close(self._slave)


class TcpLine:
    """Accepts one agent connection at a time, and the next one when it drops."""

    def __init__(self) -> None:
        self._srv = socket.create_server(("127.0.0.1", 0))
        self.url = f"socket://127.0.0.1:{self._srv.getsockname()[1]}"
        self._conn: socket.socket | None = None
        self._lock = threading.Lock()
        self._closed = False

    def _connection(self, timeout: float) -> socket.socket | None:
        if self._conn is None and not self._closed:
            r, _, _ = select.select([self._srv], [], [], timeout)
            if r:
                self._conn, _ = self._srv.accept()
                self._conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self._conn

    def read(self, timeout: float) -> bytes:
        conn = self._connection(timeout)
        if conn is None:
            return b""
        r, _, _ = select.select([conn], [], [], timeout)
        if not r:
            return b""
        try:
            data = conn.recv(4096)
        except OSError:
            data = b""
        if not data:
            self._drop()
        return data

    def write(self, data: bytes) -> None:
        conn = self._connection(0)
        if conn is not None:
            try:
                conn.sendall(data)
            except OSError:
                self._drop()

    def connected(self) -> bool:
        return self._conn is not None

    def _drop(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def close(self) -> None:
        self._closed = True
        self._drop()
        self._srv.close()
