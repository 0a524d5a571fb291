"""A real agent process for crash tests: a config file from the example, start, signal, restart.

``shaobing run`` by default; ``tests/gpio_post.py`` (the same Agent on simulated
GPIO pins driven through a file) for posts whose inputs a test must move.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from conftest import EXAMPLE

GPIO_POST = Path(__file__).with_name("gpio_post.py")


def post_config(data_dir: Path, port: int, **sections: Any) -> dict[str, Any]:
    """The example post, publishing to ``port``, keeping its state in ``data_dir``."""
    data = yaml.safe_load(EXAMPLE.read_text())
    data["mqtt"].update({"host": "127.0.0.1", "port": port, "reconnect_max_s": 1.0})
    data["mqtt"].pop("tls", None)  # the example's county broker speaks TLS; the test's does not
    data["storage"] = {"path": str(data_dir / "outbox.db")}
    data["gpio"] = {"backend": "mock", "allow_mock": True}
    data["health"] = {"interval_s": 3600}
    data["latching"] = {"hold_outputs": False}
    data["linkage"]["cooldown_s"] = 0
    # Commands are not what these tests are about (and need keys once signed).
    data["control"] = {"enabled": False}
    data.update(sections)
    return data


def write_config(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


class AgentProcess:
    """One agent process at a time on one config; ``start`` again after ``stop``."""

    def __init__(self, config: Path, log: Path, gpio_wiring: Path | None = None):
        self.config = config
        self.log = log
        self.gpio_wiring = gpio_wiring
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self, env: dict[str, str] | None = None) -> AgentProcess:
        """``env``: added to this process's environment (a pause point, say)."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        if self.gpio_wiring is not None:
            cmd = [sys.executable, str(GPIO_POST), str(self.config), str(self.gpio_wiring)]
        else:
            cmd = [sys.executable, "-m", "shaobing.cli.main", "run", "--config", str(self.config)]
        self.starts += 1
        with open(self.log, "ab") as log:
            log.write(f"--- start {self.starts}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                cmd, stdout=subprocess.DEVNULL, stderr=log, env={**os.environ, **(env or {})}
            )
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Signal the process and wait for it; SIGKILL is a crash, SIGTERM a clean stop."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def __enter__(self) -> AgentProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


CRASHES = [signal.SIGTERM, signal.SIGKILL]
