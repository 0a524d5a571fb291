"""``shaobing`` command line: argparse sub-commands, one module each in agent/commands/."""

from __future__ import annotations

import argparse
import importlib
import sys

# Modules in agent/commands/ that exist in this build; each adds its sub-parsers.
COMMANDS = ("run", "config", "demo", "detect", "models", "bench", "provision", "fleet")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shaobing",
        description="Edge agent for village-camera and railway-guard posts.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"shaobing.agent.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
