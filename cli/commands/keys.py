"""The county's side of command signing: ``shaobing keys generate`` and ``shaobing sign-command``.

These run at the county (its key custody), not on a post: a post holds only
the public key. The signing itself is agent/command_signature.py, the one a
county's own scripts may import.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from shaobing.agent.command_envelope import ARGS
from shaobing.agent.command_signature import signed_command
from shaobing.core.signing import KeyFileError, load_private, write_keypair


def register(sub: argparse._SubParsersAction) -> None:
    keys = sub.add_parser("keys", help="county command keys (Ed25519)")
    ksub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    gen = ksub.add_parser(
        "generate", help="make a key pair: OUT.key (private, 0600) and OUT.pub (for the posts)"
    )
    gen.add_argument("--out", required=True, type=Path, metavar="OUT", help="path without suffix")
    gen.add_argument("--force", action="store_true", help="overwrite an existing key pair")
    gen.set_defaults(func=generate)

    p = sub.add_parser(
        "sign-command", help="sign a command with the county key; print it (or publish it)"
    )
    p.add_argument("--key", required=True, type=Path, metavar="FILE", help="county private key")
    p.add_argument("--device", required=True, help="the post's device id")
    p.add_argument("--command", required=True, choices=sorted(ARGS), help="command name")
    p.add_argument("--args", default="{}", metavar="JSON", help="command arguments, a JSON object")
    p.add_argument("--ttl", type=float, default=60.0, metavar="S", help="lifetime in seconds")
    p.add_argument("--id", default=None, help="command id (default: a new random one)")
    p.add_argument(
        "--broker",
        default=None,
        metavar="HOST:PORT",
        help="also publish it there and print the post's answer",
    )
    p.add_argument("--village", default=None, help="the post's village code (with --broker)")
    p.add_argument("--prefix", default="shaobing/v1", help="topic prefix (with --broker)")
    p.add_argument("--ca", type=Path, default=None, help="broker CA: publish over TLS")
    p.add_argument("--cert", type=Path, default=None, help="client certificate (with --ca)")
    p.add_argument("--client-key", type=Path, default=None, help="client key (with --cert)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the answer")
    p.set_defaults(func=sign_command)


def generate(args: argparse.Namespace) -> int:
    private, public = args.out.with_suffix(".key"), args.out.with_suffix(".pub")
    existing = [str(p) for p in (private, public) if p.exists()]
    if existing and not args.force:
        print(f"{', '.join(existing)} exist(s); --force to replace", file=sys.stderr)
        return 1
    key = write_keypair(private, public)
    print(f"key id {key.kid}: private {private} (keep it at the county), public {public}")
    return 0


def sign_command(args: argparse.Namespace) -> int:
    try:
        command_args = json.loads(args.args)
    except json.JSONDecodeError as exc:
        print(f"--args: not JSON ({exc})", file=sys.stderr)
        return 2
    if not isinstance(command_args, dict):
        print("--args: must be a JSON object", file=sys.stderr)
        return 2
    if args.broker and not args.village:
        print("--broker needs --village (the topic has the post's village code)", file=sys.stderr)
        return 2
    try:
        key = load_private(args.key)
    except KeyFileError as exc:
        print(f"--key: {exc}", file=sys.stderr)
        return 2
    body = signed_command(
        key, args.device, args.command, command_args, ttl_s=args.ttl, command_id=args.id
    )
    print(json.dumps(body, ensure_ascii=False))
    if not args.broker:
        return 0
    from shaobing.cli.command_publisher import publish_and_wait

    topic_base = f"{args.prefix}/{args.village}/{args.device}"
    try:
        answer = publish_and_wait(args, topic_base, args.command, body)
    except (OSError, TimeoutError, ValueError) as exc:
        print(f"--broker {args.broker}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(answer, ensure_ascii=False))
    return 0 if answer.get("ok") else 1
