"""``shaobing console pin``: make the scrypt hash for ``console.pin_hash``."""

from __future__ import annotations

import argparse
import getpass
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("console", help="the commissioning console (docs/console.md)")
    s = p.add_subparsers(dest="console_command", metavar="ACTION", required=True)
    pin = s.add_parser("pin", help="print the console.pin_hash line for a PIN")
    pin.add_argument("--pin", metavar="DIGITS", help="the PIN (default: asked for, not echoed)")
    pin.set_defaults(func=make_pin)


def make_pin(args: argparse.Namespace) -> int:
    from shaobing.agent.console.auth import hash_pin
    from shaobing.core.ascii_input import to_ascii

    pin = args.pin if args.pin is not None else getpass.getpass("console PIN: ")
    pin = to_ascii(pin.strip())  # full-width digits typed with a Chinese IME count as digits
    if not (pin.isdigit() and 6 <= len(pin) <= 12):
        print("console PIN: give 6 to 12 digits (控制台 PIN 码须为 6-12 位数字)", file=sys.stderr)
        return 2
    print(f"  pin_hash: '{hash_pin(pin)}'")
    return 0
