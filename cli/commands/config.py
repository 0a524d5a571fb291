from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shaobing.agent.config import ConfigError, load_config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="work with config files")
    csub = p.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check = csub.add_parser("check", help="validate config files; lists every problem")
    check.add_argument("files", nargs="+", type=Path, metavar="FILE", help="YAML config file(s)")
    check.set_defaults(func=check_files)


def check_files(args: argparse.Namespace) -> int:
    from shaobing.agent.config_check import deep_problems, summary

    failed = 0
    for path in args.files:
        try:
            config = load_config(path)
        except ConfigError as exc:
            failed += 1
            _report(path, exc.problems)
            continue
        problems = deep_problems(config)
        if problems:
            failed += 1
            _report(path, problems)
            continue
        print(summary(config, path))
    return 1 if failed else 0


def _report(path: Path, problems: list) -> None:
    print(f"{path}: {len(problems)} problem(s)", file=sys.stderr)
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)
