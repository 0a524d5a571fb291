"""systemd's sd_notify protocol: one datagram of ``KEY=VALUE`` lines to $NOTIFY_SOCKET.

Written here rather than taken from the ``sdnotify`` package: the protocol is
a dozen lines, that package is unmaintained, and it does not handle abstract
socket names (``@...``) or tell a caller whether the watchdog is on.
Without $NOTIFY_SOCKET (not started by systemd) every call is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger("shaobing.sdnotify")


class Notifier:
    def __init__(self, address: str | None, watchdog_usec: int | None = None):
        self.address = address
        self.watchdog_usec = watchdog_usec

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET") or None
        usec = None
        try:
            usec = int(env.get("WATCHDOG_USEC", "")) or None
        except ValueError:
            usec = None
        # WATCHDOG_PID names the process meant to ping; a child that inherited
        # the environment must not keep a dead parent's watchdog happy.
        pid = env.get("WATCHDOG_PID")
        if pid and pid != str(os.getpid()):
            usec = None
        return cls(address, usec)

    @property
    def watchdog_interval_s(self) -> float | None:
        """Ping period: half of WatchdogSec=, as sd_watchdog_enabled(3) advises."""
        return self.watchdog_usec / 2e6 if self.watchdog_usec else None

    def notify(self, **fields: str | int) -> bool:
        if not self.address:
            return False
        message = "\n".join(f"{key}={value}" for key, value in fields.items()).encode()
        address = self.address
        if address.startswith("@"):
            address = "\0" + address[1:]
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(address)
                sock.sendall(message)
        except OSError as exc:
            log.warning("sd_notify failed", extra={"fields": {"error": str(exc)}})
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify(READY=1, **({"STATUS": status} if status else {}))

    def watchdog(self) -> bool:
        return self.notify(WATCHDOG=1)

    def stopping(self) -> bool:
        return self.notify(STOPPING=1)
