"""A real RTSP camera for the tests: crossing clips encoded like an IP camera, served by
GStreamer's RTSP server in its own process (``simulator/rtsp_server.py``)."""

from __future__ import annotations

import contextlib
import random
import socket
import threading
from pathlib import Path

from shaobing.simulator.crossing import CrossingScene, CrossingSpec
from shaobing.simulator.ipcam import encode

FPS = 15
SUB = (640, 360)
MAIN = (1280, 720)


def crossing_clip(out: Path, size: tuple[int, int], fps: int = FPS) -> Path:
    """A real person crossing a real road (two parked cars), about 9 s, looped by the server."""
    scene = CrossingScene(CrossingSpec(fps=fps, width=size[0], height=size[1]))
    return encode((scene.frame(i) for i in range(scene.length)), out, fps)


def corrupt_copy(clip: Path, out: Path) -> Path:
    """Every access unit scrambled after its delimiter: parameter sets, slices, all of it."""
    aud = b"\x00\x00\x00\x01\x09"
    rng = random.Random(7)
    units = []
    for part in clip.read_bytes().split(aud)[1:]:
        units.append(aud + bytes(rng.randrange(1, 256) for _ in part))
    out.write_bytes(b"".join(units))
    return out


class SilentServer:
    """A TCP port that accepts connections and never says a word (a hung camera's RTSP)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        # shutdown() wakes the accept() blocked in the thread; close() alone may not.
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._thread.join(5)
        for conn in self.accepted:
            conn.close()
