"""Serving the console: uvicorn on its own worker thread, bound only where the config says.

``console.listen`` names addresses or interfaces (loopback and the LAN/AP side);
an interface is looked up at start (SIOCGIFADDR) and skipped, with a warning,
when it does not exist or has no IPv4 address yet.
"""

from __future__ import annotations

import fcntl
import ipaddress
import logging
import socket
import struct
import threading

import uvicorn
from starlette.applications import Starlette

from shaobing.core.worker import ThreadWorker

log = logging.getLogger("shaobing.console")

SIOCGIFADDR = 0x8915


def interface_address(name: str) -> str | None:
    """The IPv4 address of interface ``name``, or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            raw = fcntl.ioctl(s.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
        except OSError:
            return None
    return socket.inet_ntoa(raw[20:24])


def resolve(listen: list[str]) -> list[str]:
    addresses: list[str] = []
    for entry in listen:
        try:
            addresses.append(str(ipaddress.IPv4Address(entry)))
            continue
        except ValueError:
            pass
        address = interface_address(entry)
        if address is None:
            log.warning("console: interface has no IPv4 address", extra={"fields": {"if": entry}})
        else:
            addresses.append(address)
    return list(dict.fromkeys(addresses))


class ConsoleServer:
    """The console's web server as one of the agent's workers."""

    name = "console"

    def __init__(self, app: Starlette, listen: list[str], port: int):
        self.addresses: list[str] = []
        self._sockets: list[socket.socket] = []
        for address in resolve(listen):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((address, port))
                # Listening from here on: a browser (or the installer's phone) that connects
                # before uvicorn's loop runs waits in the backlog instead of being refused.
                sock.listen(64)
            except OSError as exc:
                sock.close()
                log.error(
                    "console: cannot listen",
                    extra={"fields": {"address": f"{address}:{port}", "error": str(exc)}},
                )
                continue
            self._sockets.append(sock)
            self.addresses.append(f"{address}:{sock.getsockname()[1]}")
        self._server = uvicorn.Server(
            uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        )
        self._stop = threading.Event()
        self.worker = ThreadWorker("console", self._serve, self._stop, wake=self._exit)

    @property
    def urls(self) -> list[str]:
        return [f"http://{a}/" for a in self.addresses]

    def _serve(self) -> None:
        if self._sockets:
            self._server.run(sockets=self._sockets)
        self._stop.wait()

    def _exit(self) -> None:
        self._server.should_exit = True

    @property
    def started(self) -> bool:
        return bool(self._server.started)

    def start(self) -> None:
        self.worker.start()

    def stop(self, timeout: float = 5.0) -> None:
        self.worker.stop(timeout)
        for sock in self._sockets:
            sock.close()

    def alive(self) -> bool:
        return self.worker.alive()
