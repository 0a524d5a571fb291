"""An IP camera for tests and benchmarks: scenes encoded like one, served over real RTSP.

``encode`` turns frames (a crossing, an idle road) into H.264 the way a
Hikvision/Dahua-style camera streams it: main profile, no B-frames, a 2 s GOP,
access unit delimiters. ``RtspServer`` runs ``simulator/rtsp_server.py``
(GStreamer's RTSP server) with the system python3 as a separate process on a
free loopback port, so a test can kill, stop and restart it for real.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

SERVER_SCRIPT = Path(__file__).resolve().parent / "rtsp_server.py"
# The server needs GStreamer's introspection bindings, which Debian ships for
# its own python3 only (python3-gi, gir1.2-gst-rtsp-server-1.0).
SYSTEM_PYTHON = os.environ.get("SHAOBING_GI_PYTHON", "/usr/bin/python3")


class IpCamError(RuntimeError):
    pass


def encode(frames: Iterable[np.ndarray], out: Path, fps: int, *, gop_s: float = 2.0) -> Path:
    """H.264 Annex-B file of BGR (or grey) ``frames`` at ``fps``, encoded like an IP camera."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise IpCamError("ffmpeg not found (apt-get install ffmpeg)")
    it = iter(frames)
    first = next(it)
    h, w = first.shape[:2]
    pix = "gray" if first.ndim == 2 else "bgr24"
    cmd = [
        ffmpeg, "-loglevel", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", pix, "-s", f"{w}x{h}", "-r", str(fps), "-i", "-",
        "-c:v", "libx264", "-profile:v", "main", "-bf", "0", "-g", str(round(gop_s * fps)),
        "-keyint_min", str(round(gop_s * fps)), "-sc_threshold", "0",
        "-x264-params", "aud=1", "-pix_fmt", "yuv420p", "-preset", "veryfast",
        "-f", "h264", str(out),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None
    try:
        proc.stdin.write(np.ascontiguousarray(first).tobytes())
        for frame in it:
            proc.stdin.write(np.ascontiguousarray(frame).tobytes())
    finally:
        proc.stdin.close()
        err = proc.stderr.read() if proc.stderr else b""
        proc.wait()
    if proc.returncode != 0:
        raise IpCamError(f"ffmpeg could not encode {out}: {err.decode(errors='replace')[-500:]}")
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RtspServer:
    """``simulator/rtsp_server.py`` as a real process: start, kill, stop/cont, restart."""

    def __init__(self, mounts: Mapping[str, Path], fps: int, port: int | None = None) -> None:
        self.mounts = dict(mounts)
        self.fps = fps
        self.port = port or free_port()
        self.proc: subprocess.Popen[str] | None = None
        self.stderr: list[str] = []
        self._readers: list[threading.Thread] = []

    def url(self, mount: str, user: str | None = None) -> str:
        auth = f"{user}@" if user else ""
        return f"rtsp://{auth}127.0.0.1:{self.port}/{mount.lstrip('/')}"

    def start(self, timeout: float = 30.0) -> RtspServer:
        cmd = [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--port", str(self.port), "--fps", str(self.fps)]
        for path, file in self.mounts.items():
            cmd += ["--mount", f"/{path.lstrip('/')}={file}"]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        ready = threading.Event()
        proc = self.proc

        def watch_stdout() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.startswith("READY"):
                    ready.set()

        def keep_stderr() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                self.stderr.append(line)

        self._readers = [
            threading.Thread(target=watch_stdout, daemon=True),
            threading.Thread(target=keep_stderr, daemon=True),
        ]
        for t in self._readers:
            t.start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.05):
            if proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise IpCamError(
                    f"RTSP server on port {self.port} did not start: {''.join(self.stderr)[-800:]}"
                )
        return self

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL, as a camera losing power: no RTSP TEARDOWN, sockets just close."""
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)

    def pause(self) -> None:
        """SIGSTOP: the connection stays up and nothing more arrives (a hung camera)."""
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)

    def restart(self, timeout: float = 30.0) -> RtspServer:
        self.close()
        # The port is ours again once the old process is gone; retry while it lingers.
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.start(timeout=max(1.0, deadline - time.monotonic()))
            except IpCamError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def close(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.signal(signal.SIGCONT)  # a stopped process cannot act on SIGKILL's cleanup
            self.proc.kill()
        self.proc.wait(10)
        for t in self._readers:
            t.join(5)  # they end at EOF, now that the process is gone
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        self.proc = None

    def __enter__(self) -> RtspServer:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()
