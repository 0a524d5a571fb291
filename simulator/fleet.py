"""A fleet of virtual boxes in one process, for load-testing a county broker and platform.

Each box is the agent's real store-and-forward path: its own SQLite outbox
file, a Recorder stamping events, and an Uplink with a real paho client. One
scheduler thread raises the traffic mix for all boxes (health every
``health_s``, alarms at ``alarm_rate`` per second fleet-wide, an occasional
fault burst, a snapshot with some alarms); a platform subscriber (a real
persistent MQTT session, like a county platform's) records what arrives. The
report compares what the boxes recorded with what the platform received:
lost (must be 0), duplicates, seq gaps, alarm latency, replay duration,
failover time, broker-side message rate.

Scenarios: ``steady``; ``node-kill`` (a broker node SIGKILLed, then
restarted); ``outage`` (a county-wide outage of T minutes, in compressed time:
every box's outbox is pre-filled with T minutes of telemetry before its uplink
starts, then live traffic runs during the replay); ``storm`` (alarms at 20x).

Every box runs the agent's own uplink thread (plus its outbox writer), so the
fleet costs two mostly idle threads per box. In one process, past ~300 boxes
the threads queue for one GIL and alarm latency is the GIL's, not the
broker's; ``processes`` spreads the boxes over worker processes
(simulator/fleet_processes.py) with the platform in the parent.
"""

from __future__ import annotations

import heapq
import logging
import random
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt

from shaobing.agent.config import Config, DeviceConfig, MqttConfig
from shaobing.agent.spine import build_spine
from shaobing.core.clock import Clock
from shaobing.core.events import Source
from shaobing.simulator.county import County, Received

log = logging.getLogger("shaobing.fleet")

SCENARIOS = ("steady", "node-kill", "outage", "storm")
SRC = Source(kind="fleet", id="sim")


def _jpeg(size: int, rng: random.Random) -> bytes:
    # The platform sees a JPEG-shaped blob of realistic size; its content does not matter.
    return b"\xff\xd8\xff\xe0" + rng.randbytes(max(0, size - 6)) + b"\xff\xd9"


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


@dataclass
class FleetOptions:
    boxes: int = 100
    hosts: list[str] = field(default_factory=lambda: ["127.0.0.1:1883"])
    protocol: str = "3.1.1"
    duration_s: float = 60.0
    scenario: str = "steady"
    health_s: float = 60.0
    alarm_rate: float = 1.0  # alarms/s, fleet-wide
    snapshot_share: float = 0.2  # alarms carrying a snapshot
    snapshot_bytes: int = 60_000
    fault_burst_every_s: float = 30.0  # fleet-wide: one box reports a burst of faults
    outage_min: float = 30.0  # the `outage` scenario's pre-filled backlog, in minutes
    replay_rate: float | None = 100.0
    platform_host: str | None = None  # default: the first of ``hosts``
    drain_timeout_s: float = 120.0
    seed: int = 16
    # Worker processes sharing the boxes (simulator/fleet_processes.py): one
    # process's GIL is the bottleneck well before the broker is, past ~300 boxes.
    processes: int = 1
    fleet_size: int | None = None  # mqtt.fleet_size; default: boxes (a process runs a share)
    first_index: int = 0  # device names run from fleet-<first_index>


@dataclass
class BoxReport:
    device: str
    emitted: int
    delivered: int
    lost: int
    duplicates: int
    seq_gaps: int


@dataclass
class FleetReport:
    scenario: str
    boxes: int
    emitted: int
    delivered: int
    lost: int
    duplicates: int
    seq_gaps: int
    alarms: int
    alarm_p50_ms: float
    alarm_p99_ms: float
    alarm_max_ms: float
    replay_s: float | None
    failover_p50_s: float | None
    failover_p99_s: float | None
    failover_max_s: float | None
    broker_msgs_per_s: float
    broker_peak_msgs_per_s: float
    snapshots: int
    wall_s: float
    per_box: list[BoxReport] = field(default_factory=list)

    def summary(self) -> str:
        lines = [
            f"scenario {self.scenario}: {self.boxes} boxes, {self.wall_s:.0f} s",
            f"events: emitted {self.emitted}, delivered {self.delivered}, lost {self.lost}, "
            f"duplicates {self.duplicates}, seq gaps {self.seq_gaps}, snapshots {self.snapshots}",
            f"alarms: {self.alarms}, latency p50 {self.alarm_p50_ms:.0f} ms, "
            f"p99 {self.alarm_p99_ms:.0f} ms, max {self.alarm_max_ms:.0f} ms",
            f"broker-side rate: mean {self.broker_msgs_per_s:.0f} msg/s, "
            f"peak {self.broker_peak_msgs_per_s:.0f} msg/s",
        ]
        if self.replay_s is not None:
            lines.append(f"replay: every backlog drained in {self.replay_s:.1f} s")
        if self.failover_p99_s is not None:
            lines.append(
                f"failover: p50 {self.failover_p50_s:.1f} s, p99 {self.failover_p99_s:.1f} s, "
                f"max {self.failover_max_s:.1f} s"
            )
        bad = [b for b in self.per_box if b.lost or b.seq_gaps]
        lines += [f"  {b.device}: {asdict(b)}" for b in bad[:20]]
        return "\n".join(lines)


class Box:
    """One virtual post: a real outbox file and a real uplink."""

    def __init__(self, base: Config, index: int, mqtt_cfg: MqttConfig, data_dir: Path):
        device = f"fleet-{index:05d}"
        storage = base.storage.model_copy(
            update={"path": data_dir / f"{device}.db", "batch_delay_s": 1.0}
        )
        self.config = base.model_copy(
            update={"device": DeviceConfig(id=device), "mqtt": mqtt_cfg, "storage": storage}
        )
        self.device = device
        spine = build_spine(
            self.config, "fleet", clock=Clock(trust="always"), state_info=lambda: {"device": device}
        )
        self.outbox, self.recorder, self.uplink = spine.outbox, spine.recorder, spine.uplink
        self.emitted: dict[str, int] = {}  # event id -> seq

    def emit(self, type_: str, **kw) -> str:
        event = self.recorder.emit(type_, SRC, **kw)
        self.emitted[event.id] = event.seq
        return event.id

    def backlog(self) -> int:
        return sum(self.outbox.depth().values())

    def close(self) -> None:
        self.uplink.stop()
        self.outbox.close()


class Platform:
    """The county side: persistent subscribers, counting what arrives.

    Alarms have a subscriber of their own (docs/county.md): on one shared
    session they would queue at the broker behind a replayed backlog.
    """

    def __init__(self, host: str, port: int, protocol: int):
        self.first_seen: dict[str, float] = {}
        self.alarm_seen: dict[str, float] = {}
        self.copies: dict[str, int] = {}
        self.seqs: dict[str, set[int]] = {}
        self.snapshots = 0
        self.per_second: dict[int, int] = {}
        self._lock = threading.Lock()
        self.county = County(host, port, protocol=protocol, on_message=self._on_message)
        self.alarms = County(
            host, port, "shaobing/+/+/+/event/alarm/#", protocol, on_message=self._on_alarm
        )
        # County keeps every message for tests; a fleet would fill memory with them.
        self.county.messages = _Discard()
        self.alarms.messages = _Discard()

    def _on_alarm(self, item: Received) -> None:
        now = time.monotonic()
        with self._lock:
            self.alarm_seen.setdefault(item.json()["id"], now)

    def _on_message(self, item: Received) -> None:
        now = time.monotonic()
        with self._lock:
            self.per_second[int(now)] = self.per_second.get(int(now), 0) + 1
            if "/snapshot/" in item.topic:
                self.snapshots += 1
                return
            if "/event/" not in item.topic:
                return
            body = item.json()
            self.first_seen.setdefault(body["id"], now)
            self.copies[body["id"]] = self.copies.get(body["id"], 0) + 1
            self.seqs.setdefault(body["device"], set()).add(body["seq"])

    def close(self) -> None:
        self.county.close()
        self.alarms.close()


def open_platform(options: FleetOptions) -> Platform:
    host = options.platform_host or options.hosts[0]
    phost, _, pport = host.rpartition(":")
    protocol = mqtt.MQTTv5 if options.protocol == "5" else mqtt.MQTTv311
    return Platform(phost, int(pport), protocol)


def build_report(
    options: FleetOptions,
    p: Platform,
    emitted: dict[str, dict[str, int]],
    alarm_emitted: dict[str, float],
    failover_s: list[float],
    replay_s: float | None,
    wall_s: float,
) -> FleetReport:
    """What the boxes recorded against what the platform received (CLOCK_MONOTONIC is
    system-wide, so alarm times taken in worker processes compare with the platform's)."""
    per_box = []
    for device, ids in emitted.items():
        got = [i for i in ids if i in p.first_seen]
        seqs = p.seqs.get(device, set())
        # A seq gap the platform would see: a hole below the highest seq it has.
        gaps = (max(seqs) - min(seqs) + 1 - len(seqs)) if seqs else 0
        per_box.append(
            BoxReport(
                device=device,
                emitted=len(ids),
                delivered=len(got),
                lost=len(ids) - len(got),
                duplicates=sum(p.copies[i] - 1 for i in got),
                seq_gaps=gaps,
            )
        )
    latencies = [
        (p.alarm_seen[i] - t) * 1000 for i, t in alarm_emitted.items() if i in p.alarm_seen
    ]
    busy = [r for r in p.per_second.values() if r]
    return FleetReport(
        scenario=options.scenario,
        boxes=len(emitted),
        emitted=sum(b.emitted for b in per_box),
        delivered=sum(b.delivered for b in per_box),
        lost=sum(b.lost for b in per_box),
        duplicates=sum(b.duplicates for b in per_box),
        seq_gaps=sum(b.seq_gaps for b in per_box),
        alarms=len(alarm_emitted),
        alarm_p50_ms=statistics.median(latencies) if latencies else 0.0,
        alarm_p99_ms=percentile(latencies, 0.99),
        alarm_max_ms=max(latencies, default=0.0),
        replay_s=replay_s,
        failover_p50_s=statistics.median(failover_s) if failover_s else None,
        failover_p99_s=percentile(failover_s, 0.99) if failover_s else None,
        failover_max_s=max(failover_s) if failover_s else None,
        broker_msgs_per_s=statistics.mean(busy) if busy else 0.0,
        broker_peak_msgs_per_s=max(busy, default=0),
        snapshots=p.snapshots,
        wall_s=wall_s,
        per_box=per_box,
    )


class _Discard(list):
    def append(self, item) -> None:
        pass


class Fleet:
    def __init__(
        self,
        options: FleetOptions,
        base: Config,
        data_dir: Path,
        on_progress: Callable[[str, float], None] | None = None,
    ):
        self.options = options
        self.rng = random.Random(options.seed)
        self.data_dir = data_dir
        self.on_progress = on_progress or (lambda what, fraction: None)
        self.mqtt = MqttConfig(
            hosts=options.hosts,
            protocol=options.protocol,
            fleet_size=options.fleet_size or options.boxes,
            replay_rate=options.replay_rate,
            keepalive_s=30,
        )
        self.base = base
        self.boxes: list[Box] = []
        self.platform: Platform | None = None
        self.alarm_emitted: dict[str, float] = {}
        self.failover_s: list[float] = []
        self.replay_s: float | None = None
        self._stop = threading.Event()
        self._actions: list[threading.Thread] = []

    # ---- set-up -------------------------------------------------------
    def open(self, platform: bool = True) -> None:
        """``platform=False``: a worker process's share, the platform runs in the parent."""
        if platform:
            self.platform = open_platform(self.options)
        first = self.options.first_index
        for i in range(self.options.boxes):
            self.boxes.append(Box(self.base, first + i, self.mqtt, self.data_dir))
            self.on_progress("opening boxes", (i + 1) / self.options.boxes)

    def prefill(self, minutes: float) -> None:
        """Compressed outage: what each box buffered in ``minutes`` without a link."""
        per_box = max(1, int(minutes * 60 / self.options.health_s))
        for n, box in enumerate(self.boxes):
            for k in range(per_box):
                box.emit("status.health", data={"backlog": k})
            if self.rng.random() < 0.1:
                box.emit("fault.device_offline", data={"backlog": True})
            box.outbox.flush()
            self.on_progress("pre-filling backlogs", (n + 1) / len(self.boxes))

    def start_uplinks(self) -> None:
        for box in self.boxes:
            box.uplink.start()

    def connected(self) -> int:
        return sum(b.uplink.connected.is_set() for b in self.boxes)

    # ---- traffic ------------------------------------------------------
    def _schedule(self, duration_s: float) -> list[tuple[float, int, str]]:
        opts = self.options
        rng = self.rng
        plan: list[tuple[float, int, str]] = []
        for i in range(len(self.boxes)):
            t = rng.uniform(0, opts.health_s)
            while t < duration_s:
                plan.append((t, i, "status.health"))
                t += opts.health_s
        rate = opts.alarm_rate * (20 if opts.scenario == "storm" else 1)
        t = rng.expovariate(rate)
        while t < duration_s:
            plan.append((t, rng.randrange(len(self.boxes)), "alarm.perimeter"))
            t += rng.expovariate(rate)
        t = rng.uniform(0, opts.fault_burst_every_s)
        while t < duration_s:
            box = rng.randrange(len(self.boxes))
            plan += [(t + k * 0.05, box, "fault.device_offline") for k in range(5)]
            t += opts.fault_burst_every_s
        heapq.heapify(plan)
        return plan

    def run_traffic(self, duration_s: float, at: dict[float, Callable[[], None]]) -> None:
        """Raise the mix for ``duration_s``; ``at`` maps offsets to scenario actions."""
        plan = self._schedule(duration_s)
        actions = sorted(at.items())
        started = time.monotonic()
        while (plan or actions) and not self._stop.is_set():
            now = time.monotonic() - started
            if actions and actions[0][0] <= now:
                # A node restart takes seconds: traffic must not wait for it.
                worker = threading.Thread(target=actions.pop(0)[1], name="fleet-action")
                worker.start()
                self._actions.append(worker)
                continue
            if plan and plan[0][0] <= now:
                _, i, type_ = heapq.heappop(plan)
                self._raise(self.boxes[i], type_)
                continue
            nxt = min([plan[0][0]] if plan else [now + 0.5])
            if actions:
                nxt = min(nxt, actions[0][0])
            self.on_progress("running", min(1.0, now / duration_s))
            self._stop.wait(min(0.5, max(0.0, nxt - now)))

    def _raise(self, box: Box, type_: str) -> None:
        if type_ == "alarm.perimeter":
            snap = None
            if self.rng.random() < self.options.snapshot_share:
                snap = _jpeg(self.options.snapshot_bytes, self.rng)
            emitted_at = time.monotonic()
            event_id = box.emit(type_, zone="crossing", attachment=snap)
            self.alarm_emitted[event_id] = emitted_at
        elif type_ == "status.health":
            box.emit(type_, data={"uptime_s": 1, "outbox": box.backlog()})
        else:
            box.emit(type_, data={"device": "modbus-1"})

    # ---- scenario actions ---------------------------------------------
    def watch_failover(self, endpoint: str) -> None:
        """Time, per box that was on ``endpoint``, until it is connected elsewhere."""
        moved = [b for b in self.boxes if b.uplink.stats.endpoint == endpoint]
        started = time.monotonic()

        def watch() -> None:
            waiting = list(moved)
            while waiting and not self._stop.is_set():
                now = time.monotonic()
                still = []
                for box in waiting:
                    stats = box.uplink.stats
                    if box.uplink.connected.is_set() and stats.endpoint != endpoint:
                        self.failover_s.append(now - started)
                    else:
                        still.append(box)
                waiting = still
                self._stop.wait(0.1)

        threading.Thread(target=watch, name="fleet-failover", daemon=True).start()

    def watch_replay(self) -> None:
        started = time.monotonic()

        def watch() -> None:
            while not self._stop.is_set():
                if all(b.backlog() == 0 for b in self.boxes):
                    self.replay_s = time.monotonic() - started
                    return
                self._stop.wait(0.2)

        threading.Thread(target=watch, name="fleet-replay", daemon=True).start()

    # ---- the end --------------------------------------------------------
    def drain(self) -> bool:
        """Wait until every box's outbox is empty and the platform has every event."""
        for worker in self._actions:
            worker.join(self.options.drain_timeout_s)
        deadline = time.monotonic() + self.options.drain_timeout_s
        assert self.platform is not None
        while time.monotonic() < deadline:
            for box in self.boxes:
                box.outbox.flush()
            missing = sum(
                1 for b in self.boxes for i in b.emitted if i not in self.platform.first_seen
            )
            if missing == 0 and all(b.backlog() == 0 for b in self.boxes):
                return True
            self.on_progress(f"draining ({missing} not yet at the platform)", 1.0)
            time.sleep(0.5)
        return False

    def drain_outboxes(self) -> bool:
        """A worker process's drain: every row acknowledged by the broker (PUBACK)."""
        for worker in self._actions:
            worker.join(self.options.drain_timeout_s)
        deadline = time.monotonic() + self.options.drain_timeout_s
        while time.monotonic() < deadline:
            for box in self.boxes:
                box.outbox.flush()
            if all(b.backlog() == 0 for b in self.boxes):
                return True
            time.sleep(0.2)
        return False

    def emitted(self) -> dict[str, dict[str, int]]:
        """Per device, the event ids it recorded and their seq."""
        return {b.device: dict(b.emitted) for b in self.boxes}

    def report(self, wall_s: float) -> FleetReport:
        assert self.platform is not None
        return build_report(
            self.options,
            self.platform,
            self.emitted(),
            self.alarm_emitted,
            self.failover_s,
            self.replay_s,
            wall_s,
        )

    def close(self) -> None:
        self._stop.set()
        for box in self.boxes:
            box.close()
        if self.platform:
            self.platform.close()


def run_fleet(
    options: FleetOptions,
    base: Config,
    data_dir: Path,
    kill_node: Callable[[], str] | None = None,
    restart_node: Callable[[], None] | None = None,
    on_progress: Callable[[str, float], None] | None = None,
) -> FleetReport:
    """Run one scenario end to end and report.

    ``kill_node`` (for ``node-kill``) kills a broker node and returns its
    ``host:port``; ``restart_node`` brings it back. Both run at a third and at
    two thirds of the duration.
    """
    if options.scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {options.scenario!r}; one of {', '.join(SCENARIOS)}")
    if options.scenario == "node-kill" and kill_node is None:
        raise ValueError("the node-kill scenario needs a way to kill a broker node")
    if options.processes > 1:
        from shaobing.simulator.fleet_processes import run_in_processes

        return run_in_processes(options, base, data_dir, kill_node, restart_node, on_progress)
    started = time.monotonic()
    fleet = Fleet(options, base, data_dir, on_progress)
    try:
        fleet.open()
        if options.scenario == "outage":
            fleet.prefill(options.outage_min)
        fleet.start_uplinks()
        if options.scenario == "outage":
            fleet.watch_replay()
        deadline = time.monotonic() + max(60.0, options.boxes * 0.2)
        while fleet.connected() < len(fleet.boxes) and time.monotonic() < deadline:
            on_progress and on_progress("connecting", fleet.connected() / len(fleet.boxes))
            time.sleep(0.2)
        actions: dict[float, Callable[[], None]] = {}
        if options.scenario == "node-kill":

            def kill() -> None:
                assert kill_node is not None
                endpoint = kill_node()
                fleet.watch_failover(endpoint)

            actions[options.duration_s / 3] = kill
            if restart_node is not None:
                actions[options.duration_s * 2 / 3] = restart_node
        fleet.run_traffic(options.duration_s, actions)
        drained = fleet.drain()
        report = fleet.report(time.monotonic() - started)
        if not drained:
            log.warning("fleet did not drain", extra={"fields": {"lost": report.lost}})
        return report
    finally:
        fleet.close()
