"""``shaobing`` command line: argparse sub-commands, one module each in cli/commands/."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version

# Modules in cli/commands/ that exist in this build; each adds its sub-parsers.
COMMANDS = (
    "run",
    "status",
    "outbox",
    "config",
    "demo",
    "detect",
    "models",
    "bench",
    "provision",
    "fleet",
    "console",
)


class HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, unless the text already names it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text.lower()
            or default in (None, False, [], argparse.SUPPRESS)
            or action.nargs == 0
        ):
            return text
        return f"{text} (default: %(default)s)"


def _version() -> str:
    try:
        return version("shaobing")
    except PackageNotFoundError:
        return "0+unknown"


def iter_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """The parser and every sub-command parser below it."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield from iter_parsers(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shaobing",
        description="Edge agent for village-camera and railway-guard posts.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"shaobing {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"shaobing.cli.commands.{name}").register(sub)
    for p in iter_parsers(parser):
        p.formatter_class = HelpFormatter
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()  # bare `shaobing`: show what there is to do
        return 0
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
