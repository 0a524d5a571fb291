"""``shaobing fleet --processes N``: the boxes spread over N worker processes.

Each worker runs a share of the boxes as ``Fleet(platform=False)`` (its own
schedule: its share of the alarm rate and fault bursts, every box's health);
the parent runs the platform subscribers and the scenario's broker actions,
and builds the report from what the workers recorded. Alarm times taken in a
worker compare with the platform's because CLOCK_MONOTONIC is system-wide.

Parent and worker talk over one pipe each, in this order:
worker -> ("connected", n) ... ("ready",); parent -> ("go",);
parent -> ("failover", endpoint) while traffic runs (node-kill);
worker -> ("result", {...}) after its traffic and its drain; parent -> ("close",).
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing as mp
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from shaobing.agent.config import Config
from shaobing.simulator.fleet import Fleet, FleetOptions, FleetReport, build_report, open_platform


def _shares(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (i < extra) for i in range(parts) if base + (i < extra)]


def _worker(options: FleetOptions, base: Config, data_dir: Path, conn: Connection) -> None:
    fleet = Fleet(options, base, data_dir)
    try:
        fleet.open(platform=False)
        if options.scenario == "outage":
            fleet.prefill(options.outage_min)
        fleet.start_uplinks()
        if options.scenario == "outage":
            fleet.watch_replay()
        deadline = time.monotonic() + max(60.0, options.boxes * 0.2)
        while fleet.connected() < len(fleet.boxes) and time.monotonic() < deadline:
            conn.send(("connected", fleet.connected()))
            time.sleep(0.2)
        conn.send(("ready",))
        if conn.recv() != ("go",):
            return

        def listen() -> None:
            while True:
                try:
                    message = conn.recv()
                except EOFError:
                    return
                if message[0] == "failover":
                    fleet.watch_failover(message[1])
                elif message[0] == "close":
                    return

        listener = threading.Thread(target=listen, name="fleet-worker-pipe", daemon=True)
        listener.start()
        fleet.run_traffic(options.duration_s, {})
        drained = fleet.drain_outboxes()
        if options.scenario == "outage":
            deadline = time.monotonic() + options.drain_timeout_s
            while fleet.replay_s is None and time.monotonic() < deadline:
                time.sleep(0.2)
        conn.send(
            (
                "result",
                {
                    "emitted": fleet.emitted(),
                    "alarm_emitted": fleet.alarm_emitted,
                    "failover_s": fleet.failover_s,
                    "replay_s": fleet.replay_s,
                    "drained": drained,
                },
            )
        )
        listener.join(options.drain_timeout_s)
    finally:
        fleet.close()
        conn.close()


def run_in_processes(
    options: FleetOptions,
    base: Config,
    data_dir: Path,
    kill_node: Callable[[], str] | None = None,
    restart_node: Callable[[], None] | None = None,
    on_progress: Callable[[str, float], None] | None = None,
) -> FleetReport:
    progress = on_progress or (lambda what, fraction: None)
    started = time.monotonic()
    platform = open_platform(options)
    # spawn, not fork: the parent already runs paho threads a fork would copy mid-flight.
    ctx = mp.get_context("spawn")
    workers: list[tuple[Any, Connection]] = []
    first = options.first_index
    try:
        for k, count in enumerate(_shares(options.boxes, options.processes)):
            share = count / options.boxes
            worker_opts = dataclasses.replace(
                options,
                boxes=count,
                processes=1,
                fleet_size=options.fleet_size or options.boxes,
                first_index=first,
                alarm_rate=options.alarm_rate * share,
                fault_burst_every_s=options.fault_burst_every_s / share,
                seed=options.seed + k,
            )
            first += count
            parent_end, worker_end = ctx.Pipe()
            process = ctx.Process(
                target=_worker,
                args=(worker_opts, base, data_dir / f"p{k}", worker_end),
                name=f"fleet-{k}",
                daemon=True,
            )
            process.start()
            worker_end.close()
            workers.append((process, parent_end))
        connected = [0] * len(workers)
        ready = [False] * len(workers)
        deadline = time.monotonic() + max(120.0, options.boxes * 0.3)
        while not all(ready) and time.monotonic() < deadline:
            for i, (_, conn) in enumerate(workers):
                while not ready[i] and conn.poll(0.05):
                    message = conn.recv()
                    if message[0] == "connected":
                        connected[i] = message[1]
                    elif message[0] == "ready":
                        ready[i] = True
            progress("connecting", sum(connected) / options.boxes)
        for _, conn in workers:
            conn.send(("go",))

        def act(at_s: float, action: Callable[[], None]) -> threading.Timer:
            timer = threading.Timer(at_s, action)
            timer.daemon = True
            timer.start()
            return timer

        timers = []
        if options.scenario == "node-kill" and kill_node is not None:

            def kill() -> None:
                endpoint = kill_node()
                for _, conn in workers:
                    conn.send(("failover", endpoint))

            timers.append(act(options.duration_s / 3, kill))
            if restart_node is not None:
                timers.append(act(options.duration_s * 2 / 3, restart_node))
        results: list[dict[str, Any] | None] = [None] * len(workers)
        deadline = time.monotonic() + options.duration_s + 2 * options.drain_timeout_s
        while any(r is None for r in results) and time.monotonic() < deadline:
            for i, (_, conn) in enumerate(workers):
                if results[i] is None and conn.poll(0.1):
                    message = conn.recv()
                    if message[0] == "result":
                        results[i] = message[1]
            elapsed = time.monotonic() - started
            progress("running", min(1.0, elapsed / max(1.0, options.duration_s)))
        for timer in timers:
            timer.join(options.drain_timeout_s)
        got = [r for r in results if r is not None]
        emitted = {d: ids for r in got for d, ids in r["emitted"].items()}
        alarms = {i: t for r in got for i, t in r["alarm_emitted"].items()}
        # The platform may still be reading what the broker acknowledged.
        deadline = time.monotonic() + options.drain_timeout_s
        while time.monotonic() < deadline:
            missing = sum(
                1 for ids in emitted.values() for i in ids if i not in platform.first_seen
            )
            if missing == 0:
                break
            progress(f"draining ({missing} not yet at the platform)", 1.0)
            time.sleep(0.5)
        replays = [r["replay_s"] for r in got if r["replay_s"] is not None]
        return build_report(
            options,
            platform,
            emitted,
            alarms,
            [s for r in got for s in r["failover_s"]],
            max(replays) if replays else None,
            time.monotonic() - started,
        )
    finally:
        for _, conn in workers:
            with contextlib.suppress(BrokenPipeError, OSError):
                conn.send(("close",))
        for process, conn in workers:
            process.join(30)
            if process.is_alive():
                process.kill()
            conn.close()
        platform.close()
