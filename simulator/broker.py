"""Local MQTT brokers for the demo and the tests: a real Mosquitto process, or
amqtt (pure Python, MQTT 3.1.1 only) when Mosquitto is not installed."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def mosquitto_path() -> str | None:
    return shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )


class Mosquitto:
    """One Mosquitto process on a loopback port; stop() and start() simulate outages.

    The port is kept across restarts so the agent reconnects to the same address.
    ``extra_conf`` lines are appended (e.g. a TLS listener).
    """

    def __init__(self, port: int | None = None, extra_conf: str = "", listener: str | None = None):
        exe = mosquitto_path()
        if exe is None:
            raise RuntimeError("mosquitto is not installed: sudo apt-get install -y mosquitto")
        self.exe = exe
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="shaobing-mosquitto-"))
        self.conf = self.dir / "mosquitto.conf"
        listener = listener or f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
        self.conf.write_text(
            # As root, mosquitto would switch to user "mosquitto" and then fail
            # to read the test's own files (ACLs, certificates) in 0700 dirs.
            f"user {pwd.getpwuid(os.getuid()).pw_name}\n"
            # Persistence keeps subscribers' sessions across a restart, as a
            # county broker does, so an outage test loses nothing on their side.
            f"{listener}persistence true\npersistence_location {self.dir}/\n"
            f"log_dest file {self.dir / 'log'}\n"
            f"max_queued_messages 100000\n{extra_conf}"
        )
        self.proc: subprocess.Popen | None = None

    def start(self) -> Mosquitto:
        self.proc = subprocess.Popen(
            [self.exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            wait_for_port(self.port)
        except TimeoutError:
            err = b""
            if self.proc.poll() is not None and self.proc.stderr:
                err = self.proc.stderr.read()
            self.stop()
            raise RuntimeError(
                f"mosquitto did not start: {err.decode(errors='replace')}{self.log()[-2000:]}"
            ) from None
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        path = self.dir / "log"
        return path.read_text(errors="replace") if path.exists() else ""

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class EmbeddedBroker:
    """amqtt in a background thread: lets ``make demo`` run with nothing installed by apt."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._broker = None

    def start(self) -> EmbeddedBroker:
        from amqtt.broker import Broker

        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
        self._thread.start()
        self._broker = Broker(config, loop=self._loop)
        asyncio.run_coroutine_threadsafe(self._broker.start(), self._loop).result(10)
        wait_for_port(self.port)
        return self

    def close(self) -> None:
        if self._broker is not None:
            asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
