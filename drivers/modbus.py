"""Modbus RTU detectors: poll, decode through the profile, emit on change, supervise.

``ModbusDetector`` is the per-unit state machine and does no threading of its
own; ``ModbusBusPoller`` runs one thread per bus because a bus can only carry
one request at a time anyway, while separate buses poll in parallel.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import serial
from pymodbus import FramerType
from pymodbus.client import ModbusSerialClient
from pymodbus.exceptions import ConnectionException, ModbusException

from shaobing.core.events import EventSink, Severity, Source, opened_before

from .profile import (
    DeviceProfile,
    ProfileDecodeError,
    Snapshot,
    decode,
    low_value_state,
    read_plan,
)
from .serial_bus import BusWorker, SerialBus
from .serial_config import ModbusDetectorConfig

log = logging.getLogger(__name__)

# Event type for each profile bit kind when the condition appears. The end of
# an alarm.X is alarm.X.restore, the end of any fault is fault.cleared.
_BIT_EVENTS = {
    "zone_alarm": "alarm.perimeter",
    "tamper": "alarm.tamper",
    "cable_cut": "fault.cable_cut",
    "fault": "fault.device",
    "low_voltage": "fault.low_voltage",
}


class _BusClient(ModbusSerialClient):
    """pymodbus' serial client on the shared ``SerialBus`` port.

    pymodbus would open its own port per client; several units on one RS-485
    line must share one, so ``connect``/``close`` are delegated to the bus.
    Framing, CRC and retries stay pymodbus'.
    """

    def __init__(self, bus: SerialBus, retries: int, trace: Callable[[bool, bytes], bytes]):
        c = bus.cfg
        super().__init__(
            c.url,
            framer=FramerType.RTU,
            baudrate=c.baudrate,
            bytesize=c.bytesize,
            parity=c.parity,
            stopbits=int(c.stopbits),
            timeout=c.timeout_s,
            retries=retries,
            trace_packet=trace,
        )
        self._bus = bus

    def connect(self) -> bool:
        port = self._bus.port
        if port is None:
            try:
                port = self._bus.open()
            except serial.SerialException as exc:
                log.warning("modbus error", extra={"fields": {"error": str(exc)}})
                self.socket = None
                return False
        if port is not self.socket:
            self.socket = port  # type: ignore[assignment]
            port.inter_byte_timeout = self.inter_byte_timeout or None
        return True

    def close(self) -> None:
        self._bus.close()
        self.socket = None

    def send(self, request: bytes, addr: tuple | None = None) -> int:
        # Whatever is still in the input buffer (a late or half reply, line
        # noise) belongs to no request; pymodbus only drains what in_waiting
        # reports, which for socket:// is at most one byte.
        if self.socket is not None and request:
            try:
                self.socket.reset_input_buffer()
            except (serial.SerialException, OSError):
                self.close()
                raise ConnectionException(str(self)) from None
        return super().send(request, addr)

    def recv(self, size: int | None) -> bytes:
        if size is not None:
            return super().recv(size)
        # pymodbus sizes its read from in_waiting, which pyserial's socket://
        # only reports as 0 or 1, so a reply arrives a byte per poll interval
        # and long replies miss the deadline. Block for the first byte, then
        # take what is there; pymodbus' framer keeps asking until the frame
        # is whole or the timeout passes.
        port = self.socket
        if port is None:
            raise ConnectionException(str(self))
        try:
            data = port.read(1)
            while data and (n := port.in_waiting):
                data += port.read(n)
        except (serial.SerialException, OSError):
            self.close()
            raise ConnectionException(str(self)) from None
        return data


@dataclass
class PollStats:
    polls: int = 0
    ok: int = 0
    missed: int = 0
    timeouts: int = 0  # nothing came back at all
    bad_frames: int = 0  # bytes came back but no valid reply: bad CRC, half frame, garbage
    exceptions: int = 0  # the device answered with a Modbus exception code
    decode_errors: int = 0
    port_errors: int = 0
    events: int = 0
    last_latency_s: float = 0.0
    max_latency_s: float = 0.0
    latencies: list[float] = field(default_factory=list, repr=False)


class _PollFailed(Exception):
    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


class ModbusDetector:
    def __init__(
        self,
        cfg: ModbusDetectorConfig,
        bus: SerialBus,
        sink: EventSink,
        profile: DeviceProfile | None = None,
    ) -> None:
        self.cfg = cfg
        self.bus = bus
        self.sink = sink
        self.profile = profile or cfg.load_profile()
        self.plan = read_plan(self.profile)
        self.source = Source(kind="modbus", id=cfg.id)
        self.stats = PollStats()
        self.offline = False
        self._missed_in_row = 0
        self._bits: dict[tuple[str, int | None], bool] = {}
        self._low: dict[tuple[str, int | None], bool] = {}
        self._rx_bytes = 0
        self._answered_once = False
        self._client = _BusClient(bus, cfg.retries, self._trace)
        self._zone_of = {z.device_zone: z.zone for z in cfg.zones}

    # -- wire ---------------------------------------------------------------

    def _trace(self, sending: bool, data: bytes) -> bytes:
        if not sending:
            self._rx_bytes += len(data)
        return data

    def _read(self, table: str, start: int, count: int) -> list[int]:
        c, unit = self._client, self.cfg.unit
        read = {
            "coil": c.read_coils,
            "discrete_input": c.read_discrete_inputs,
            "holding_register": c.read_holding_registers,
            "input_register": c.read_input_registers,
        }[table]
        self._rx_bytes = 0
        try:
            rr = read(start, count=count, device_id=unit)
        except (ModbusException, serial.SerialException, OSError) as exc:
            if not self._client.connected:
                raise _PollFailed("port_errors", str(exc)) from exc
            kind = "bad_frames" if self._rx_bytes else "timeouts"
            raise _PollFailed(kind, str(exc)) from exc
        if rr.isError():
            raise _PollFailed("exceptions", f"{table}@{start}: {rr}")
        if table in ("coil", "discrete_input"):
            return [int(b) for b in rr.bits[:count]]
        return list(rr.registers)

    def read_blocks(self) -> dict[str, list[int]]:
        with self.bus.lock:
            return {t: self._read(t, s, n) for t, (s, n) in self.plan.items()}

    # -- poll -----------------------------------------------------------------

    def poll_once(self) -> bool:
        """One poll: read, decode, emit what changed. True if the device answered."""
        st = self.stats
        st.polls += 1
        t0 = time.monotonic()
        try:
            blocks = self.read_blocks()
            snap = decode(self.profile, blocks)
        except _PollFailed as exc:
            setattr(st, exc.kind, getattr(st, exc.kind) + 1)
            self._missed(str(exc))
            return False
        except ProfileDecodeError as exc:
            st.decode_errors += 1
            self._missed(str(exc))
            return False
        dt = time.monotonic() - t0
        st.ok += 1
        st.last_latency_s = dt
        st.max_latency_s = max(st.max_latency_s, dt)
        if len(st.latencies) < 10_000:
            st.latencies.append(dt)
        self._answered(snap)
        return True

    def _missed(self, why: str) -> None:
        self.stats.missed += 1
        self._missed_in_row += 1
        log.debug("missed poll", extra={"fields": {"source": self.cfg.id, "why": why}})
        if not self.offline and self._missed_in_row >= self.cfg.offline_after_missed:
            for zone in self._device_zones():
                self._emit(
                    "fault.device_offline",
                    zone,
                    {"state": "fault", "missed_polls": self._missed_in_row, "last_error": why},
                )
            self.offline = True

    def _answered(self, snap: Snapshot) -> None:
        self._missed_in_row = 0
        zones: list[str] = []
        if self.offline:
            zones = self._device_zones()
        elif not self._answered_once:
            # Offline when an earlier run ended, answering now: that fault ends here.
            zones = self._first_reading("fault.device_offline", None, False)
        for zone in zones:
            self._emit(
                "fault.cleared",
                zone,
                {"state": "restore", "cleared": "fault.device_offline"},
                Severity.INFO,
            )
        self.offline = False
        self._answered_once = True
        for key, on in snap.bits.items():
            self._edge(key, on, snap)
        for v in self.profile.values:
            if v.low_below is None:
                continue
            for (name, dz), value in snap.values.items():
                if name != v.name:
                    continue
                key = (name, dz)
                was = self._low.get(key)
                low = low_value_state(v, value, bool(was))
                if low == bool(was) and was is not None:
                    continue
                extra = {"value": value, "unit": v.unit, "threshold": v.low_below, "name": name}
                zones = None
                if was is None:
                    zones = self._first_reading("fault.low_voltage", dz, low)
                    extra["at_start"] = True
                    if not zones:
                        self._low[key] = low
                        continue
                if self._emit_condition("fault.low_voltage", dz, low, snap, extra, zones):
                    self._low[key] = low

    def _edge(self, key: tuple[str, int | None], on: bool, snap: Snapshot) -> None:
        kind, dz = key
        prev = self._bits.get(key)
        if prev == on:
            return
        if kind == "armed":
            # The arming state at start-up is a baseline, not news.
            if prev is not None:
                try:
                    for zone in self._targets(dz):
                        data = self._data(dz, snap) | {"state": "arm" if on else "disarm"}
                        self._emit("status.arming", zone, data | {"armed": on})
                except Exception:
                    log.exception(
                        "sink refused status.arming", extra={"fields": {"source": self.cfg.id}}
                    )
                    return
            self._bits[key] = on
            return
        zones = None
        extra: dict[str, Any] = {}
        if prev is None:
            zones = self._first_reading(_BIT_EVENTS[kind], dz, on)
            extra["at_start"] = True
            if not zones:
                self._bits[key] = on
                return
        if self._emit_condition(_BIT_EVENTS[kind], dz, on, snap, extra, zones):
            self._bits[key] = on

    def _first_reading(self, condition: str, dz: int | None, on: bool) -> list[str]:
        """Zones whose first reading is news: a condition found on that the ledger does not
        hold open (reported as today), or found normal that an earlier run left open (closed)."""
        channel = "" if dz is None else str(dz)
        return [
            z
            for z in self._targets(dz)
            if on != opened_before(self.sink, self.source, z, condition, channel)
        ]

    def _emit_condition(
        self,
        etype: str,
        dz: int | None,
        on: bool,
        snap: Snapshot,
        extra: dict[str, Any],
        zones: list[str] | None = None,
    ) -> bool:
        """Emit the start or end of a condition (in ``zones``, default every target);
        False if a sink failed (retry next poll)."""
        head = etype.split(".", 1)[0]
        severity: Severity | None = None
        if on:
            t, state = etype, head  # "alarm" or "fault"
        elif head == "fault":
            t, state, extra = "fault.cleared", "restore", extra | {"cleared": etype}
            severity = Severity.INFO
        else:
            # The project's scheme (docs/mqtt.md): a restore is its own type,
            # so event/alarm/+ subscribers see alarms only.
            t, state, severity = f"{etype}.restore", "restore", Severity.INFO
        try:
            for zone in self._targets(dz) if zones is None else zones:
                self._emit(t, zone, self._data(dz, snap) | extra | {"state": state}, severity)
        except Exception:
            log.exception(
                "sink refused an event", extra={"fields": {"source": self.cfg.id, "type": t}}
            )
            return False
        return True

    # -- helpers --------------------------------------------------------------

    def _device_zones(self) -> list[str]:
        if self.cfg.box_zone:
            return [self.cfg.box_zone]
        return list(dict.fromkeys(self._zone_of.values()))

    def _targets(self, dz: int | None) -> list[str]:
        if dz is None:
            return self._device_zones()
        z = self._zone_of.get(dz)
        # Unwired channels often sit in "cut" or "alarm" for good; they are
        # not anybody's zone, so they produce nothing.
        return [z] if z else []

    def _data(self, dz: int | None, snap: Snapshot) -> dict[str, Any]:
        raw_bits = {k: v for (k, z), v in snap.bits.items() if z == dz or z is None}
        raw_values = {k: v for (k, z), v in snap.values.items() if z == dz or z is None}
        d: dict[str, Any] = {
            "modbus_unit": self.cfg.unit,
            "model": self.profile.model,
            "raw": {"bits": raw_bits, "values": raw_values},
        }
        if dz is not None:
            d["device_zone"] = dz
        return d

    def _emit(
        self, etype: str, zone: str, data: dict[str, Any], severity: Severity | None = None
    ) -> None:
        self.sink.emit(etype, self.source, zone=zone, data=data, severity=severity)
        self.stats.events += 1

    # -- commands -------------------------------------------------------------

    def set_armed(self, device_zone: int | None, armed: bool) -> None:
        """Arm or disarm a zone (or the device if arming is not per zone)."""
        spec = self.profile.arming
        if spec is None:
            raise ValueError(f"profile {self.profile.model} has no arming")
        addr = spec.address
        if spec.per_zone:
            if device_zone is None or not 1 <= device_zone <= self.profile.zones:
                raise ValueError("per-zone arming needs a device zone")
            addr += device_zone - 1
        value = spec.arm_value if armed else spec.disarm_value
        with self.bus.lock:
            c, unit = self._client, self.cfg.unit
            if spec.table == "coil":
                rr = c.write_coil(addr, bool(value), device_id=unit)
            else:
                rr = c.write_register(addr, value, device_id=unit)
        if rr.isError():
            raise ModbusException(f"{self.cfg.id}: arming write refused: {rr}")


class ModbusBusPoller(BusWorker):
    """One thread per bus, polling its detectors each at its own period."""

    def __init__(self, bus: SerialBus, detectors: Iterable[ModbusDetector]) -> None:
        super().__init__(bus)
        self.thread_name = f"modbus-{bus.cfg.id}"
        self.detectors: Sequence[ModbusDetector] = list(detectors)

    def _run(self) -> None:
        due = {id(d): time.monotonic() for d in self.detectors}
        while not self._stop.is_set():
            now = time.monotonic()
            for d in self.detectors:
                if due[id(d)] <= now and not self._stop.is_set():
                    try:
                        d.poll_once()
                    except Exception:  # a bug must not end supervision of the bus
                        log.exception("poll crashed", extra={"fields": {"source": d.cfg.id}})
                    # Keep the schedule, but never try to catch up a backlog.
                    due[id(d)] = max(due[id(d)] + d.cfg.poll_period_s, time.monotonic())
            self._stop.wait(max(0.0, min(due.values()) - time.monotonic()))
