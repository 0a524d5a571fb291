"""Simulated Modbus RTU detectors: a real pymodbus RTU server loaded from profiles.

One ``SimulatedModbusBus`` is one RS-485 line: a pymodbus ``ModbusSerialServer``
(RTU framer) hosting several units, each a ``SimulatedDetector`` built from a
device profile. A scenario flips zone bits and values through the detector;
the server answers with them on the next read. Faults are injected on the
frames the server sends (pymodbus' ``trace_packet`` hook sees each complete
reply): silence, bad CRC, a corrupted byte, half a frame, random bytes.

The line is exposed either as a loopback ``socket://`` URL (pymodbus serves
RTU over TCP there) or as a pty whose slave path the agent opens like a real
serial port; a small pump thread joins the pty to the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import select
import socket
import struct
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from pymodbus import FramerType
from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import DataType, SimData, SimDevice

from shaobing.drivers.profile import (
    BIT_TABLES,
    DeviceProfile,
    Table,
    ValuePoint,
    bit_locations,
    load_profile,
    value_locations,
)

from .line import PtyLine

_FC_TABLE: dict[int, Table] = {
    1: "coil",
    5: "coil",
    15: "coil",
    2: "discrete_input",
    3: "holding_register",
    6: "holding_register",
    16: "holding_register",
    22: "holding_register",
    23: "holding_register",
    4: "input_register",
}
_TABLE_ORDER: tuple[Table, ...] = ("coil", "discrete_input", "holding_register", "input_register")


class Fault(StrEnum):
    NONE = "none"
    SILENT = "silent"  # the request is processed, no reply goes out
    BAD_CRC = "bad_crc"  # reply with its CRC bytes altered
    CORRUPT = "corrupt"  # one data byte flipped, CRC left as it was
    HALF_FRAME = "half_frame"  # only the first half of the reply
    RANDOM_BYTES = "random_bytes"  # the reply replaced by noise of the same length
    NOISE_PREFIX = "noise_prefix"  # line noise, then the genuine reply


class SimulatedDetector:
    """One unit's memory, laid out by its profile."""

    def __init__(self, unit: int, profile: DeviceProfile | str) -> None:
        self.unit = unit
        self.profile = profile if isinstance(profile, DeviceProfile) else load_profile(profile)
        self._lock = threading.Lock()
        # table -> address -> value (bits as 0/1); the truth the server serves.
        self._mem: dict[Table, dict[int, int]] = {t: {} for t in _TABLE_ORDER}
        for p in self.profile.bits:
            for z, addr, _bit in bit_locations(p, self.profile.zones):
                self._mem[p.table].setdefault(addr, 0)
                self._set_bit_locked(p.kind, z, False)
        for v in self.profile.values:
            for z, addr in value_locations(v, self.profile.zones):
                for a in range(addr, addr + v.words):
                    self._mem[v.table].setdefault(a, 0)
                if v.low_below is not None:
                    self._set_value_locked(v, z, v.low_below + v.hysteresis + 1.0)
        if a := self.profile.arming:
            n = self.profile.zones if a.per_zone else 1
            for i in range(n):
                self._mem[a.table].setdefault(a.address + i, a.disarm_value)
        self.writes: list[tuple[Table, int, int]] = []

    # -- scenario controls ----------------------------------------------------

    def set_bit(self, kind: str, zone: int | None, on: bool) -> None:
        """Make a condition present or absent (honours active_low)."""
        with self._lock:
            self._set_bit_locked(kind, zone, on)

    def set_zone_alarm(self, zone: int, on: bool) -> None:
        self.set_bit("zone_alarm", zone, on)

    def set_value(self, name: str, zone: int | None, value: float) -> None:
        v = next(v for v in self.profile.values if v.name == name)
        with self._lock:
            self._set_value_locked(v, zone, value)

    def _set_bit_locked(self, kind: str, zone: int | None, on: bool) -> None:
        found = False
        for p in self.profile.bits:
            if p.kind != kind:
                continue
            for z, addr, bit in bit_locations(p, self.profile.zones):
                if z != zone:
                    continue
                found = True
                level = on != p.active_low
                mem = self._mem[p.table]
                if bit is None:
                    mem[addr] = int(level)
                else:
                    mem[addr] = (mem.get(addr, 0) & ~(1 << bit)) | (int(level) << bit)
        if not found:
            raise KeyError(f"{self.profile.model}: no {kind} bit for zone {zone}")

    def _set_value_locked(self, v: ValuePoint, zone: int | None, value: float) -> None:
        addr = dict(value_locations(v, self.profile.zones))[zone]
        raw = round((value - v.offset) / v.scale)
        if v.type == "float32":
            words = list(struct.unpack(">HH", struct.pack(">f", (value - v.offset) / v.scale)))
        elif v.words == 2:
            words = [(raw >> 16) & 0xFFFF, raw & 0xFFFF]
        else:
            words = [raw & 0xFFFF]
        if v.word_order == "little":
            words.reverse()
        for i, w in enumerate(words):
            self._mem[v.table][addr + i] = w

    # -- pymodbus glue ----------------------------------------------------------

    def sim_device(self) -> SimDevice:
        blocks: list[list[SimData]] = []
        for t in _TABLE_ORDER:
            size = max(self._mem[t], default=0) + 1
            dtype = DataType.BITS if t in BIT_TABLES else DataType.REGISTERS
            blocks.append([SimData(0, count=size, values=0, datatype=dtype)])
        return SimDevice(
            self.unit,
            simdata=(blocks[0], blocks[1], blocks[2], blocks[3]),
            action=self._action,
        )

    async def _action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> None:
        table = _FC_TABLE[function_code]
        with self._lock:
            if set_values:
                self._write_locked(table, address, [int(x) for x in set_values])
            # pymodbus keeps its own copy; refresh it from ours before it answers.
            for addr, val in self._mem[table].items():
                if table in BIT_TABLES:
                    r = addr // 16 - start_address
                    if 0 <= r < len(registers):
                        bit = 1 << (addr % 16)
                        registers[r] = (registers[r] | bit) if val else (registers[r] & ~bit)
                else:
                    r = addr - start_address
                    if 0 <= r < len(registers):
                        registers[r] = val
        return None

    def _write_locked(self, table: Table, address: int, values: list[int]) -> None:
        for i, val in enumerate(values):
            self._mem[table][address + i] = val
            self.writes.append((table, address + i, val))
        a = self.profile.arming
        if a is None or a.table != table:
            return
        # A real controller reflects an arming write in its status bits.
        n = self.profile.zones if a.per_zone else 1
        for i in range(n):
            if a.address + i in range(address, address + len(values)):
                armed = self._mem[table][a.address + i] == a.arm_value
                zone = i + 1 if a.per_zone else None
                with contextlib.suppress(KeyError):
                    self._set_bit_locked("armed", zone, armed)


@dataclass
class BusStats:
    replies: int = 0
    faulted: int = 0


class SimulatedModbusBus:
    """A pymodbus RTU server for several simulated units on one line."""

    def __init__(
        self,
        detectors: Iterable[SimulatedDetector],
        transport: Literal["socket", "pty"] = "socket",
        seed: int | None = None,
        tcp_port: int = 0,
    ) -> None:
        self.detectors = {d.unit: d for d in detectors}
        self.transport = transport
        self.stats = BusStats()
        self._faults: dict[int | None, tuple[Fault, int | None]] = {}
        self._custom: dict[int | None, bytes] = {}
        self._flock = threading.Lock()
        self._rng = random.Random(seed)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: ModbusSerialServer | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._tcp_port = tcp_port
        self._pty: PtyLine | None = None
        self._pump: threading.Thread | None = None
        self._stopping = threading.Event()
        self.url = ""

    def __getitem__(self, unit: int) -> SimulatedDetector:
        return self.detectors[unit]

    # -- faults ---------------------------------------------------------------

    def inject(self, fault: Fault, unit: int | None = None, count: int | None = None) -> None:
        """Apply ``fault`` to the next ``count`` replies of ``unit`` (all units if None;
        until cleared if count is None)."""
        with self._flock:
            if fault is Fault.NONE:
                self._faults.pop(unit, None)
            else:
                self._faults[unit] = (fault, count)

    def inject_reply(self, data: bytes, unit: int | None = None) -> None:
        """Send ``data`` instead of the next reply to ``unit`` (for fuzzing)."""
        with self._flock:
            self._custom[unit] = data

    def clear_faults(self) -> None:
        with self._flock:
            self._faults.clear()
            self._custom.clear()

    def _take_fault(self, unit: int) -> Fault:
        with self._flock:
            for key in (unit, None):
                if key in self._faults:
                    fault, left = self._faults[key]
                    if left is not None:
                        if left <= 1:
                            del self._faults[key]
                        else:
                            self._faults[key] = (fault, left - 1)
                    return fault
        return Fault.NONE

    def _trace_packet(self, sending: bool, packet: bytes) -> bytes:
        if not sending or not packet:
            return packet
        self.stats.replies += 1
        with self._flock:
            for key in (packet[0], None):
                if key in self._custom:
                    self.stats.faulted += 1
                    return self._custom.pop(key)
        fault = self._take_fault(packet[0])
        if fault is Fault.NONE:
            return packet
        self.stats.faulted += 1
        rng = self._rng
        if fault is Fault.SILENT:
            return b""
        if fault is Fault.BAD_CRC:
            return packet[:-2] + bytes([packet[-2] ^ 0xFF, packet[-1] ^ 0x5A])
        if fault is Fault.CORRUPT:
            i = rng.randrange(1, max(2, len(packet) - 2))
            return packet[:i] + bytes([packet[i] ^ (1 << rng.randrange(8))]) + packet[i + 1 :]
        if fault is Fault.HALF_FRAME:
            return packet[: len(packet) // 2]
        if fault is Fault.RANDOM_BYTES:
            return rng.randbytes(len(packet))
        if fault is Fault.NOISE_PREFIX:
            return rng.randbytes(rng.randrange(1, 8)) + packet
        return packet

    # -- lifecycle ------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> str:
        self._thread = threading.Thread(target=self._serve, name="sim-modbus", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout) or self._start_error:
            raise RuntimeError(f"simulated bus did not start: {self._start_error}")
        tcp_url = f"socket://127.0.0.1:{self._tcp_port}"
        if self.transport == "pty":
            self._pty = PtyLine()
            self._pump = threading.Thread(target=self._pty_pump, name="sim-pty", daemon=True)
            self._pump.start()
            self.url = self._pty.url
        else:
            self.url = tcp_url
        return self.url

    def _serve(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to start()
            self._start_error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        server = ModbusSerialServer(
            [d.sim_device() for d in self.detectors.values()],
            framer=FramerType.RTU,
            port=f"socket://127.0.0.1:{self._tcp_port}",
            trace_packet=self._trace_packet,
        )
        self._server = server
        await server.serve_forever(background=True)
        self._tcp_port = server.transport.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._ready.set()
        await server.serving

    def _pty_pump(self) -> None:
        """Join the pty to the RTU-over-TCP server, byte for byte."""
        assert self._pty is not None
        pty = self._pty
        while not self._stopping.is_set():
            try:
                conn = socket.create_connection(("127.0.0.1", self._tcp_port), timeout=2)
            except OSError:
                self._stopping.wait(0.1)
                continue
            with conn:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conn.setblocking(False)
                while not self._stopping.is_set():
                    r, _, _ = select.select([pty.fileno(), conn], [], [], 0.2)
                    try:
                        if pty.fileno() in r:
                            data = pty.read(0)
                            if data:
                                conn.sendall(data)
                        if conn in r:
                            data = conn.recv(4096)
                            if not data:
                                break
                            os.write(pty.fileno(), data)
                    except OSError:
                        break

    def stop(self) -> None:
        self._stopping.set()
        if self._pump is not None:
            self._pump.join(5)
        if self._loop is not None and self._server is not None:
            fut = asyncio.run_coroutine_threadsafe(self._server.shutdown(), self._loop)
            with contextlib.suppress(Exception):  # the loop may be gone already
                fut.result(5)
        if self._thread is not None:
            self._thread.join(5)
        if self._pty is not None:
            self._pty.close()

    def __enter__(self) -> SimulatedModbusBus:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
