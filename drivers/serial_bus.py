"""One serial line (a pyserial URL plus line settings) shared by several devices.

RS-485 is half duplex: only one request may be on the wire at a time, so every
exchange on a bus happens under ``SerialBus.lock``. The port is opened lazily
through ``serial.serial_for_url`` so ``/dev/ttyUSB0``, ``socket://host:port``
(serial device servers) and ``rfc2217://`` are handled the same way, and it is
reopened after an I/O error (USB adapters re-enumerate, device servers drop
TCP connections).
"""

from __future__ import annotations

import logging
import threading

import serial

from shaobing.core.worker import ThreadWorker

from .serial_config import SerialBusConfig

log = logging.getLogger(__name__)


class SerialBus:
    def __init__(self, cfg: SerialBusConfig) -> None:
        self.cfg = cfg
        # Re-entrant so a driver can hold the bus across several requests
        # (one poll = several reads) while helpers lock again inside.
        self.lock = threading.RLock()
        self._port: serial.SerialBase | None = None
        self.opens = 0
        self.open_failures = 0

    @property
    def port(self) -> serial.SerialBase | None:
        """The open port, or None if it is closed."""
        p = self._port
        return p if p is not None and p.is_open else None

    def open(self) -> serial.SerialBase:
        """The open port, opening it if needed. Raises ``serial.SerialException``."""
        with self.lock:
            if self.port is not None:
                return self._port  # type: ignore[return-value]
            c = self.cfg
            try:
                self._port = serial.serial_for_url(
                    c.url,
                    baudrate=c.baudrate,
                    bytesize=c.bytesize,
                    parity=c.parity,
                    stopbits=c.stopbits,
                    timeout=c.timeout_s,
                    write_timeout=c.timeout_s,
                    # A second process on the same RS-485 adapter would
                    # interleave frames with ours.
                    exclusive=True,
                )
            except (serial.SerialException, OSError, ValueError) as exc:
                self.open_failures += 1
                self._port = None
                raise serial.SerialException(f"bus {c.id}: cannot open {c.url}: {exc}") from exc
            self.opens += 1
            log.info("bus opened", extra={"fields": {"bus": c.id, "url": c.url}})
            return self._port

    def close(self) -> None:
        with self.lock:
            if self._port is not None:
                try:
                    self._port.close()
                except (serial.SerialException, OSError) as exc:
                    log.debug(
                        "bus close failed",
                        extra={"fields": {"bus": self.cfg.id, "error": str(exc)}},
                    )
            self._port = None


class BusWorker:
    """A thread that owns one bus: ``start`` runs ``_run`` until ``stop``,
    which also closes the port so a blocked read returns."""

    thread_name = "serial"

    def __init__(self, bus: SerialBus) -> None:
        self.bus = bus
        self._stop = threading.Event()
        self.worker: ThreadWorker | None = None

    def start(self) -> None:
        # A worker per start: a bus may be stopped and started again (its port reopened).
        self._stop.clear()
        self.worker = ThreadWorker(self.thread_name, self._run, self._stop)
        self.worker.start()

    def alive(self) -> bool:
        return self.worker is None or self.worker.alive()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self.worker is not None:
            self.worker.stop(timeout)
        self.bus.close()

    def _run(self) -> None:
        raise NotImplementedError
