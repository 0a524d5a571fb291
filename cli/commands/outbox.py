"""``shaobing outbox list|dump``: what waits in an outbox, read-only (agent/outbox_reader.py)."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from shaobing.agent.config import INSTALLED_CONFIG, ConfigError, load_config
from shaobing.agent.outbox_reader import (
    CLASSES,
    COLUMNS,
    OutboxReader,
    OutboxReadError,
    Query,
    parse_seq_range,
    parse_time,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "outbox",
        help="list or export what waits in an outbox (live or set aside), read-only",
        description="Opens the outbox read-only (SQLite mode=ro): safe while the agent runs, "
        "and a set-aside file (outbox.db.corrupt-<time>) is never changed.",
    )
    osub = p.add_subparsers(dest="outbox_command", required=True, metavar="ACTION")
    ls = osub.add_parser("list", help="a table of waiting rows and counts per class")
    dump = osub.add_parser("dump", help="export waiting rows with their events, JSON or CSV")
    for q in (ls, dump):
        where = q.add_mutually_exclusive_group()
        where.add_argument(
            "--config", "-c", type=Path, default=INSTALLED_CONFIG, metavar="FILE",
            help=f"agent config; its storage.path is the outbox (default: {INSTALLED_CONFIG})",
        )  # fmt: skip
        where.add_argument("--file", type=Path, metavar="FILE", help="an outbox file to read")
        q.add_argument(
            "--class", dest="classes", action="append", choices=CLASSES, metavar="CLASS",
            help=f"only this class ({', '.join(CLASSES)}); repeat for more (default: all)",
        )  # fmt: skip
        q.add_argument("--seq", metavar="N-M", help="only seq N to M (N-, -M or N also work)")
        q.add_argument("--since", metavar="TIME", help="created at or after TIME (ISO, local)")
        q.add_argument("--until", metavar="TIME", help="created before TIME (ISO, local)")
        q.add_argument("--limit", type=int, metavar="N", help="at most N rows (default: all)")
    fmt = dump.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="JSON lines, one row a line (default)")
    fmt.add_argument("--csv", action="store_true", help="CSV with a header row")
    ls.set_defaults(func=list_rows)
    dump.set_defaults(func=dump_rows)


def _open(args: argparse.Namespace) -> tuple[OutboxReader, Query]:
    path = args.file
    if path is None:
        try:
            path = load_config(args.config).storage.path
        except ConfigError as exc:
            raise OutboxReadError(str(exc)) from None
    try:
        seq_from, seq_to = parse_seq_range(args.seq) if args.seq else (None, None)
        since = parse_time(args.since) if args.since else None
        until = parse_time(args.until) if args.until else None
    except ValueError as exc:
        raise OutboxReadError(str(exc)) from None
    query = Query(tuple(args.classes or ()), seq_from, seq_to, since, until, args.limit)
    return OutboxReader(path), query


def list_rows(args: argparse.Namespace) -> int:
    try:
        reader, query = _open(args)
    except OutboxReadError as exc:
        print(f"shaobing outbox: {exc}", file=sys.stderr)
        return 1
    try:
        counts = reader.counts()
        print(f"{reader.path}: " + ", ".join(f"{n} {c}" for c, n in counts.items()))
        meta = reader.meta()
        dropped = {c: meta.get(f"dropped.{c}", 0) for c in CLASSES}
        print(f"last seq {meta.get('seq', 0)}, run {meta.get('run', 0)}, dropped " + ", ".join(
            f"{n} {c}" for c, n in dropped.items()
        ))  # fmt: skip
        rows = list(reader.rows(query))
    finally:
        reader.close()
    # Fits 120 columns; `dump` has the full ISO time.
    widths = {"seq": 6, "class": 8, "type": 24, "created": 14, "zone": 10, "source": 16}
    print()
    print("  ".join(f"{c.upper():<{w}}" for c, w in widths.items()) + "  EVENT_ID")
    for r in rows:
        r = {**r, "created": r["created"][5:].replace("T", " ")}
        cells = [str(r[c] if r[c] is not None else "-") for c in widths]
        line = "  ".join(f"{v:<{w}}" for v, w in zip(cells, widths.values(), strict=True))
        print(f"{line}  {r['event_id']}{'  (replay)' if r['replayed'] else ''}")
    print(f"\n{len(rows)} row(s)")
    return 0


def dump_rows(args: argparse.Namespace) -> int:
    try:
        reader, query = _open(args)
    except OutboxReadError as exc:
        print(f"shaobing outbox: {exc}", file=sys.stderr)
        return 1
    try:
        if args.csv:
            writer = csv.DictWriter(sys.stdout, [*COLUMNS, "event"], extrasaction="ignore")
            writer.writeheader()
            for r in reader.rows(query, payload=True):
                if "event" in r:
                    r["event"] = json.dumps(r["event"], ensure_ascii=False)
                writer.writerow(r)
        else:
            for r in reader.rows(query, payload=True):
                print(json.dumps(r, ensure_ascii=False))
    finally:
        reader.close()
    return 0
