"""``shaobing fleet``: N virtual boxes against a broker, for a county to load-test its platform."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from shaobing.agent.config import ConfigError, load_config

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "examples" / "village-post.yaml"


def register(sub: argparse._SubParsersAction) -> None:
    from shaobing.simulator.fleet import SCENARIOS, FleetOptions

    d = FleetOptions()
    p = sub.add_parser("fleet", help="simulate a fleet of boxes against a broker (load test)")
    p.add_argument("--boxes", type=int, default=d.boxes, help="virtual boxes")
    p.add_argument(
        "--hosts",
        default=None,
        metavar="HOST:PORT[,HOST:PORT]",
        help="broker nodes; default: start a local Mosquitto",
    )
    p.add_argument("--scenario", choices=SCENARIOS, default=d.scenario, help="what happens")
    p.add_argument("--duration", type=float, default=d.duration_s, help="seconds of traffic")
    p.add_argument("--outage-min", type=float, default=d.outage_min, help="outage scenario")
    p.add_argument("--alarm-rate", type=float, default=d.alarm_rate, help="alarms/s fleet-wide")
    p.add_argument("--health-s", type=float, default=d.health_s, help="health period per box")
    p.add_argument("--replay-rate", type=float, default=d.replay_rate, help="mqtt.replay_rate")
    p.add_argument("--protocol", choices=["5", "3.1.1"], default=d.protocol, help="MQTT version")
    p.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG, metavar="FILE", help="base config of a box"
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        default=None,
        help="outbox files; default: a temporary directory",
    )
    p.add_argument(
        "--processes",
        type=int,
        default=d.processes,
        metavar="N",
        help="worker processes sharing the boxes (past ~300 boxes one process's GIL, not the "
        "broker, sets the latency)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from shaobing.simulator.broker import Mosquitto
    from shaobing.simulator.fleet import FleetOptions, run_fleet

    logging.basicConfig(level=logging.ERROR)  # a thousand boxes' INFO lines help nobody
    try:
        base = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.boxes < 1:
        print("--boxes: at least 1", file=sys.stderr)
        return 2
    broker = None
    if args.hosts is None:
        broker = Mosquitto().start()
        hosts = [f"127.0.0.1:{broker.port}"]
    else:
        hosts = [h.strip() for h in args.hosts.split(",") if h.strip()]
    options = FleetOptions(
        boxes=args.boxes,
        hosts=hosts,
        protocol=args.protocol,
        duration_s=args.duration,
        scenario=args.scenario,
        health_s=args.health_s,
        alarm_rate=args.alarm_rate,
        outage_min=args.outage_min,
        replay_rate=args.replay_rate or None,
        processes=max(1, args.processes),
    )
    if args.scenario == "node-kill" and broker is None:
        print("node-kill needs a broker this command can kill: omit --hosts", file=sys.stderr)
        return 2
    bar = tqdm(total=100, file=sys.stderr, disable=args.json or not sys.stderr.isatty())

    def progress(what: str, fraction: float) -> None:
        bar.set_description(what, refresh=False)
        bar.n = int(fraction * 100)
        bar.refresh()

    def kill() -> str:
        assert broker is not None
        broker.stop()
        return hosts[0]

    def restart() -> None:
        assert broker is not None
        broker.start()

    try:
        with tempfile.TemporaryDirectory(prefix="shaobing-fleet-") as tmp:
            data_dir = args.data_dir or Path(tmp)
            data_dir.mkdir(parents=True, exist_ok=True)
            report = run_fleet(options, base, data_dir, kill, restart, progress)
    finally:
        bar.close()
        if broker is not None:
            broker.close()
    if args.json:
        print(json.dumps(asdict(report), ensure_ascii=False))
    else:
        print(report.summary())
    return 0 if report.lost == 0 else 1
