"""Builds and runs every serial driver from the ``serial:`` config section.

Threads: one per bus with Modbus detectors (the bus serialises requests
anyway, separate buses poll in parallel) and one per Contact ID line (the host
talks when it likes, so its line is read continuously).
"""

from __future__ import annotations

from typing import Any

from shaobing.core.events import EventSink

from .contact_id import ContactIdLine, ContactIdReceiver
from .modbus import ModbusBusPoller, ModbusDetector
from .serial_bus import SerialBus
from .serial_config import SerialConfig


class SerialDrivers:
    def __init__(self, config: SerialConfig, sink: EventSink) -> None:
        self.buses = {b.id: SerialBus(b) for b in config.buses}
        self.detectors = [ModbusDetector(d, self.buses[d.bus], sink) for d in config.modbus]
        self.pollers = [
            ModbusBusPoller(bus, [d for d in self.detectors if d.bus is bus])
            for bus in self.buses.values()
            if any(d.bus is bus for d in self.detectors)
        ]
        self.receivers = [ContactIdReceiver(c, sink) for c in config.contact_id]
        self.lines = [ContactIdLine(r, self.buses[r.cfg.bus]) for r in self.receivers]

    def start(self) -> None:
        for p in self.pollers:
            p.start()
        for line in self.lines:
            line.start()

    def stop(self) -> None:
        for p in self.pollers:
            p.stop()
        for line in self.lines:
            line.stop()

    def alive(self) -> bool:
        """The agent's liveness check: every started bus and line thread still runs.

        Serial reads have timeouts, so a thread cannot hang in I/O; a dead one
        (a bug past the loop's own exception guard) is what this catches.
        """
        return all(w.alive() for w in (*self.pollers, *self.lines))

    def detector(self, detector_id: str) -> ModbusDetector:
        return next(d for d in self.detectors if d.cfg.id == detector_id)

    def state(self) -> dict[str, Any]:
        """For status.health: per device reachability and error counters."""
        out: dict[str, Any] = {}
        for d in self.detectors:
            s = d.stats
            out[d.cfg.id] = {
                "online": not d.offline,
                "polls": s.polls,
                "missed": s.missed,
                "timeouts": s.timeouts,
                "bad_frames": s.bad_frames,
                "exceptions": s.exceptions,
                "max_latency_ms": round(s.max_latency_s * 1000, 1),
            }
        for r in self.receivers:
            st = r.stats
            out[r.cfg.id] = {
                "online": not r.offline,
                "valid": st.valid,
                "rejected": st.rejected,
                "checksum_errors": st.checksum_errors,
                "duplicates": st.duplicates,
            }
        return out
