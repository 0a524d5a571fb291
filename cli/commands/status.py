"""``shaobing status``: the running agent's state, read from its status file (no broker needed)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from shaobing.agent.config import INSTALLED_CONFIG, ConfigError, load_config
from shaobing.agent.status_file import StatusError, format_status, read_status, running, status_path
from shaobing.cli.text import translator

# As `systemctl status`: 3 = not running.
EXIT_NOT_RUNNING = 3


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "status",
        help="show the running agent's link, outbox, open alarms and last events",
        description="Reads status.json, which the agent rewrites in its state directory "
        "at start, every health.interval_s and at stop; works without a broker. "
        "Exit status 0: running, 3: not running, 1: no status to read.",
    )
    p.add_argument(
        "--config", "-c", type=Path, default=INSTALLED_CONFIG, metavar="FILE",
        help=f"agent config, its storage.path names the state dir (default: {INSTALLED_CONFIG})",
    )  # fmt: skip
    p.add_argument(
        "--state-dir", type=Path, metavar="DIR", help="read DIR/status.json; overrides --config"
    )
    p.add_argument("--json", action="store_true", help="print the status file as JSON")
    p.set_defaults(func=status)


def status(args: argparse.Namespace) -> int:
    state_dir = args.state_dir
    if state_dir is None:
        try:
            state_dir = load_config(args.config).storage.path.parent
        except ConfigError as exc:
            print(f"shaobing status: {exc}", file=sys.stderr)
            return 1
    try:
        doc = read_status(status_path(state_dir))
    except StatusError as exc:
        print(f"shaobing status: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({**doc, "running": running(doc)}, ensure_ascii=False, indent=1))
    else:
        print(format_status(doc, _=translator(args)))
    return 0 if running(doc) else EXIT_NOT_RUNNING
