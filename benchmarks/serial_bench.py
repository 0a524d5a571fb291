"""Figures for the serial drivers: Modbus poll latency, Contact ID parse and ACK rates.

Run: .venv/bin/python benchmarks/serial_bench.py
The simulator runs in the same process as the driver, so the latencies include
its share of the GIL; a real device on a real line adds the wire time
(9600 baud: ~1 ms per byte).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from shaobing.core.events import Source
from shaobing.drivers.contact_id import ContactIdReceiver, format_raw, parse
from shaobing.drivers.modbus import ModbusDetector
from shaobing.drivers.serial_bus import SerialBus
from shaobing.drivers.serial_config import (
    ContactIdConfig,
    ModbusDetectorConfig,
    SerialBusConfig,
    ZoneMap,
)
from shaobing.simulator.alarm_host import SimulatedAlarmHost
from shaobing.simulator.modbus_device import SimulatedDetector, SimulatedModbusBus


class NullSink:
    def emit(self, type: str, source: Source, **kw: object) -> None:
        return None

    def recent_frames(self, scope: str) -> list:
        return []


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def modbus(transport: str, profile: str, n: int = 300) -> None:
    with SimulatedModbusBus([SimulatedDetector(1, profile)], transport=transport) as sim:
        bus = SerialBus(SerialBusConfig(id="b", url=sim.url, timeout_s=0.5))
        cfg = ModbusDetectorConfig(
            id="d", bus="b", unit=1, profile=profile, zones=[ZoneMap(device_zone=1, zone="z")]
        )
        d = ModbusDetector(cfg, bus, NullSink())
        for _ in range(n):
            d.poll_once()
        lat = [x * 1000 for x in d.stats.latencies]
        reads = len(d.plan)
        print(
            f"modbus {transport:6} {profile:18} {reads} read(s)/poll: "
            f"p50 {statistics.median(lat):.2f} ms  p95 {pct(lat, 0.95):.2f} ms  "
            f"max {max(lat):.2f} ms  ok {d.stats.ok}/{d.stats.polls}"
        )
        bus.close()


def contact_id_parse(n: int = 100_000) -> None:
    frames = [format_raw("1234", "13"[i % 2], 130 + i % 10, 1, i % 999) for i in range(1000)]
    t = time.perf_counter()
    for i in range(n):
        parse(frames[i % 1000])
    dt = time.perf_counter() - t
    print(f"contact id parse: {n / dt:,.0f} messages/s")
    rx = ContactIdReceiver(ContactIdConfig(id="h", bus="b", duplicate_window_s=0), NullSink())
    blob = b"".join(f.encode() + b"\r" for f in frames)
    t = time.perf_counter()
    for _ in range(n // 1000):
        rx.feed(blob)
    dt = time.perf_counter() - t
    print(f"contact id receiver (framing+parse+map+emit, null sink): {n / dt:,.0f} events/s")


def contact_id_line(n: int = 200) -> None:
    from shaobing.drivers.contact_id import ContactIdLine

    with SimulatedAlarmHost(transport="pty") as host:
        rx = ContactIdReceiver(ContactIdConfig(id="h", bus="b", duplicate_window_s=0), NullSink())
        line = ContactIdLine(rx, SerialBus(SerialBusConfig(id="b", url=host.url, timeout_s=0.05)))
        line.start()
        while line.bus.port is None:
            time.sleep(0.01)
        t = time.perf_counter()
        for i in range(n):
            host.alarm(130, zone=i % 999)
        dt = time.perf_counter() - t
        line.stop()
    print(
        f"contact id over pty, message + ACK round trip: {dt / n * 1000:.2f} ms "
        f"({n / dt:,.0f} messages/s), acked {host.stats.acked}/{n}"
    )


def contact_id_line_durable(n: int = 200) -> None:
    """The same round trip with the real recorder and outbox: each ACK waits for its fsync."""
    import statistics
    import tempfile

    from shaobing.agent.config import load_config
    from shaobing.agent.outbox import Outbox
    from shaobing.agent.recorder import Recorder
    from shaobing.core.clock import Clock
    from shaobing.drivers.contact_id import ContactIdLine

    example = Path(__file__).resolve().parents[1] / "examples" / "village-post.yaml"
    with tempfile.TemporaryDirectory() as tmp, SimulatedAlarmHost(transport="pty") as host:
        outbox = Outbox(Path(tmp) / "outbox.db")
        rec = Recorder(load_config(example), outbox, Clock(trust="never"))
        rx = ContactIdReceiver(ContactIdConfig(id="h", bus="b", duplicate_window_s=0), rec)
        line = ContactIdLine(rx, SerialBus(SerialBusConfig(id="b", url=host.url, timeout_s=0.05)))
        line.start()
        while line.bus.port is None:
            time.sleep(0.01)
        for code in (130, 401, 602):  # alarm, opening/closing, test report: all wait alike
            rtts = []
            for i in range(n):
                t = time.perf_counter()
                host.report(code, "1", 1, i % 999)
                rtts.append(time.perf_counter() - t)
            print(
                f"contact id {code} over pty, message -> durable -> ACK: median "
                f"{statistics.median(rtts) * 1000:.2f} ms, p99 {pct(rtts, 0.99) * 1000:.2f} ms"
            )
        line.stop()
        outbox.close()
    print(f"acked {host.stats.acked}/{3 * n}, not durable in time {rx.stats.not_durable}")


if __name__ == "__main__":
    for transport in ("pty", "socket"):
        for profile in ("vibration_fibre_8", "pulse_fence_2"):
            modbus(transport, profile)
    contact_id_parse()
    contact_id_line()
    contact_id_line_durable()
