"""Read-only view of an outbox file for a technician: ``shaobing outbox list|dump``.

The file is opened with SQLite's read-only URI (``file:...?mode=ro``), so a
live outbox is read from a consistent WAL snapshot without blocking or
disturbing the agent's writer; a file without a ``-wal`` beside it (a
set-aside ``outbox.db.corrupt-<time>``, a copy on a USB stick, a stopped
agent's outbox) is opened ``immutable=1`` as well, so nothing, not even a
``-shm``, is written next to it.

``sqlite-utils`` does the querying here (inspection and export); the agent's
own durable transactions stay on plain ``sqlite3`` in agent/outbox.py, where
exact control over transactions and fsync is needed.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from shaobing.core.events import Priority

CLASSES = tuple(p.name.lower() for p in Priority)
COLUMNS = ("seq", "class", "type", "created", "event_id", "run", "replayed", "zone", "source")


class OutboxReadError(Exception):
    pass


@dataclass(frozen=True)
class Query:
    classes: tuple[str, ...] = ()
    seq_from: int | None = None
    seq_to: int | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    limit: int | None = None


def parse_seq_range(text: str) -> tuple[int | None, int | None]:
    """``120-180``, ``120-`` or ``-180``, or one number."""
    lo, sep, hi = text.partition("-")
    try:
        first = int(lo) if lo.strip() else None
        last = int(hi) if hi.strip() else None
        if not sep:
            last = first
    except ValueError:
        raise ValueError(f"seq range {text!r}: expected N, N-M, N- or -M") from None
    if first is not None and last is not None and last < first:
        raise ValueError(f"seq range {text!r}: {last} is before {first}")
    return first, last


def parse_time(text: str) -> int:
    """ISO date/time (local time unless it names a zone) -> ms since the epoch."""
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"time {text!r}: expected e.g. 2026-12-05 or 2026-12-05T14:30") from None
    return int(when.timestamp() * 1000)


def open_readonly(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise OutboxReadError(f"{path}: no such file")
    quoted = urllib.parse.quote(str(path.resolve()))
    # A live outbox has its -wal beside it (the agent holds it open): read a
    # consistent snapshot through it. A file without one (set aside, copied,
    # agent stopped) is complete by itself: immutable, so not even a -shm is made.
    live = path.with_name(path.name + "-wal").exists()
    query = "mode=ro" if live else "mode=ro&immutable=1"
    conn = sqlite3.connect(f"file:{quoted}?{query}", uri=True)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise OutboxReadError(f"{path}: cannot be read as an outbox ({exc})") from exc
    return conn


class OutboxReader:
    def __init__(self, path: Path):
        self.path = path
        self._conn = open_readonly(path)
        self.db = Database(self._conn)
        if "outbox" not in self.db.table_names():
            self.close()
            raise OutboxReadError(f"{path}: has no outbox table (not a shaobing outbox)")

    def close(self) -> None:
        self._conn.close()

    def meta(self) -> dict[str, int]:
        if "meta" not in self.db.table_names():
            return {}
        return {r["key"]: r["value"] for r in self.db["meta"].rows}

    def counts(self) -> dict[str, int]:
        found = {c: 0 for c in CLASSES}
        for row in self.db.query("SELECT priority, count(*) AS n FROM outbox GROUP BY priority"):
            found[Priority(row["priority"]).name.lower()] = row["n"]
        return found

    def rows(self, q: Query, *, payload: bool = False) -> Iterator[dict[str, Any]]:
        where, args = [], []
        if q.classes:
            where.append(f"priority IN ({', '.join('?' * len(q.classes))})")
            args += [Priority[c.upper()].value for c in q.classes]
        if q.seq_from is not None:
            where.append("seq >= ?")
            args.append(q.seq_from)
        if q.seq_to is not None:
            where.append("seq <= ?")
            args.append(q.seq_to)
        if q.since_ms is not None:
            where.append("created_ms >= ?")
            args.append(q.since_ms)
        if q.until_ms is not None:
            where.append("created_ms < ?")
            args.append(q.until_ms)
        run = self.meta().get("run")
        for r in self.db["outbox"].rows_where(
            " AND ".join(where) or None, args, order_by="priority, rowid", limit=q.limit
        ):
            yield self._describe(r, run, payload)

    @staticmethod
    def _describe(r: dict[str, Any], run: int | None, payload: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "seq": r["seq"],
            "class": Priority(r["priority"]).name.lower(),
            "type": r["event_type"],
            "created": dt.datetime.fromtimestamp(r["created_ms"] / 1000).isoformat(
                timespec="seconds"
            ),
            "event_id": r["event_id"],
            "run": r["run"],
            # Rows of an earlier run go out again with "replayed": true.
            "replayed": run is not None and r["run"] < run,
            "zone": None,
            "source": None,
        }
        if r["kind"] == "event":
            try:
                event = json.loads(r["payload"])
            except ValueError:
                event = None
            if isinstance(event, dict):
                out["zone"] = (event.get("zone") or {}).get("id")
                src = event.get("source") or {}
                out["source"] = f"{src.get('kind')}:{src.get('id')}"
                if payload:
                    out["event"] = event
        else:
            out["bytes"] = len(r["payload"])
        return out
