from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shaobing.agent.config import ConfigError, load_config
from shaobing.cli.text import translator
from shaobing.core.i18n import Catalogue


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="work with config files")
    csub = p.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check = csub.add_parser("check", help="validate config files; lists every problem")
    check.add_argument("files", nargs="+", type=Path, metavar="FILE", help="YAML config file(s)")
    check.set_defaults(func=check_files)


def check_files(args: argparse.Namespace) -> int:
    from shaobing.agent.config_check import deep_problems, summary

    _ = translator(args)
    failed = 0
    for path in args.files:
        try:
            config = load_config(path)
        except ConfigError as exc:
            failed += 1
            _report(_, path, exc.problems)
            continue
        problems = deep_problems(config)
        if problems:
            failed += 1
            _report(_, path, problems)
            continue
        print(summary(config, path, _))
    if len(args.files) > 1:
        print(
            _("{ok} of {n} file(s) ok, {failed} with problems").format(
                ok=len(args.files) - failed, n=len(args.files), failed=failed
            ),
            file=sys.stderr if failed else sys.stdout,
        )
    return 1 if failed else 0


def _report(_: Catalogue, path: Path, problems: list) -> None:
    print(_("{path}: {n} problem(s)").format(path=path, n=len(problems)), file=sys.stderr)
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)
