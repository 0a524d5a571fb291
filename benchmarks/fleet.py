"""Fleet benchmark (issue 16 targets), one scenario per run:

    .venv/bin/python benchmarks/fleet.py steady   [--boxes 1000] [--duration 120]
    .venv/bin/python benchmarks/fleet.py outage   [--boxes 500]  [--outage-min 30]
    .venv/bin/python benchmarks/fleet.py cluster  [--boxes 200]  [--duration 60]

steady: N boxes against one Mosquitto, health 1/min/box, alarms 1/s fleet-wide.
outage: N boxes, each outbox pre-filled with T minutes of telemetry (compressed
time), then all reconnect and replay while live traffic runs.
cluster: N boxes against a 3-node RabbitMQ cluster, one node killed at 1/3
and restarted at 2/3 of the run.
Prints the fleet report (JSON with --json).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from shaobing.agent.config import load_config
from shaobing.simulator.broker import Mosquitto
from shaobing.simulator.fleet import FleetOptions, run_fleet
from shaobing.simulator.rabbitmq import RabbitCluster

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "village-post.yaml"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("scenario", choices=["steady", "outage", "cluster"])
    p.add_argument("--boxes", type=int)
    p.add_argument("--duration", type=float)
    p.add_argument("--outage-min", type=float, default=30)
    p.add_argument("--replay-rate", type=float, default=100)
    p.add_argument(
        "--processes", type=int, default=os.cpu_count() or 1, help="worker processes for the boxes"
    )
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.ERROR)
    base = load_config(EXAMPLE)
    with tempfile.TemporaryDirectory(prefix="shaobing-fleet-bench-") as tmp:
        if args.scenario == "cluster":
            cluster = RabbitCluster(3)
            try:
                cluster.start()
                cluster.wait_clustered()
                options = FleetOptions(
                    boxes=args.boxes or 200,
                    hosts=cluster.mqtt_hosts,
                    protocol="3.1.1",
                    scenario="node-kill",
                    duration_s=args.duration or 60,
                    platform_host=cluster.mqtt_hosts[0],
                    replay_rate=args.replay_rate,
                    processes=args.processes,
                )

                def kill() -> str:
                    cluster.kill(1)
                    return cluster.mqtt_hosts[1]

                report = run_fleet(options, base, Path(tmp), kill, lambda: cluster.start(1))
            finally:
                cluster.close()
        else:
            broker = Mosquitto().start()
            try:
                options = FleetOptions(
                    boxes=args.boxes or (1000 if args.scenario == "steady" else 500),
                    hosts=[f"127.0.0.1:{broker.port}"],
                    protocol="5",
                    scenario=args.scenario,
                    duration_s=args.duration or (120 if args.scenario == "steady" else 60),
                    outage_min=args.outage_min,
                    replay_rate=args.replay_rate,
                    drain_timeout_s=600,
                    processes=args.processes,
                )
                report = run_fleet(options, base, Path(tmp))
            finally:
                broker.close()
    if args.json:
        out = asdict(report)
        out.pop("per_box")
        print(json.dumps(out))
    else:
        print(report.summary())
    return 0 if report.lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
