from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shaobing.agent import logs
from shaobing.agent.config import ConfigError, load_config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the agent (the daemon)")
    p.add_argument(
        "--config", "-c", type=Path, required=True, metavar="FILE", help="YAML config file"
    )
    p.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="JSON log lines at this level and above, on stderr (journald)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from shaobing.agent.runtime import EXIT_RESTART, Agent

    logs.setup(args.log_level)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    restart = Agent(config, config_path=args.config).run_until_signalled()
    return EXIT_RESTART if restart else 0
