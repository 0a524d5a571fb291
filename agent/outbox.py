"""The SQLite outbox: the source of truth for everything not yet acknowledged.

Rows are written before any publish attempt and deleted only after a PUBACK
with a success reason code. paho's own queue only ever holds the bounded
in-flight window the uplink hands it.

Durability per class (set per transaction, since ``synchronous`` is per connection):
- alarm and fault rows commit with ``synchronous=FULL``: the WAL is fsynced
  before ``append`` returns, so a power cut after an alarm was raised cannot
  lose it.
- status and snapshot rows commit with ``synchronous=NORMAL``: WAL mode keeps
  the file consistent, but the last few of these may be lost in a power cut;
  they are periodic or re-creatable and not worth an fsync each on an SD card.
- acknowledgements (deletes) commit with NORMAL: losing one only causes a
  duplicate resend, which the platform drops by ``id``.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from shaobing.agent.events import Event, Priority

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    rowid INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,                -- 'event' or 'snapshot'
    event_id TEXT NOT NULL,
    seq INTEGER,                       -- event seq; NULL for snapshots
    priority INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    payload BLOB NOT NULL,             -- JSON for events, JPEG for snapshots
    created_ms INTEGER NOT NULL,
    run INTEGER NOT NULL               -- agent run that wrote it: older runs are replays
);
CREATE INDEX IF NOT EXISTS outbox_drain ON outbox (priority, rowid);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('seq', 0), ('run', 0);
"""


@dataclass(frozen=True)
class Row:
    rowid: int
    kind: str
    event_id: str
    seq: int | None
    priority: Priority
    event_type: str
    payload: bytes
    replayed: bool


class StorageCorrupt(Exception):
    pass


class Outbox:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.recovered_from: Path | None = None
        try:
            self._db = self._open()
        except (sqlite3.DatabaseError, StorageCorrupt) as exc:
            self.recovered_from = self._set_aside(exc)
            self._db = self._open()
        # One connection shared by the driver threads and the uplink; sqlite3
        # serialises internally but a transaction must not interleave.
        self._lock = threading.Lock()
        with self._lock, self._db:
            self._db.execute("UPDATE meta SET value = value + 1 WHERE key = 'run'")
            self.run = self._meta("run")
        self._waiters: list[Callable[[], None]] = []
        self.pending_after_close: int | None = None

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            verdict = db.execute("PRAGMA quick_check").fetchone()[0]
            if verdict != "ok":
                raise StorageCorrupt(verdict)
            db.executescript(_SCHEMA)
        except BaseException:
            db.close()
            raise
        # isolation_level=None + explicit BEGIN keeps control of transactions.
        db.isolation_level = ""
        return db

    def _set_aside(self, exc: Exception) -> Path:
        aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(f"{self.path}{suffix}")
            if src.exists():
                src.rename(f"{aside}{suffix}")
        self.corruption = f"{type(exc).__name__}: {exc}"
        return aside

    def _meta(self, key: str) -> int:
        return self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0]

    def on_append(self, callback: Callable[[], None]) -> None:
        """Called (outside the lock) after each append: wakes the uplink."""
        self._waiters.append(callback)

    def append(self, make_event: Callable[[int], Event], attachment: bytes | None = None) -> Event:
        """Assign the next seq, build the event with it and commit; returns once durable."""
        with self._lock:
            seq = self._meta("seq") + 1
            event = make_event(seq)
            sync = "FULL" if event.priority <= Priority.FAULT else "NORMAL"
            self._db.execute(f"PRAGMA synchronous={sync}")
            now = int(time.time() * 1000)
            with self._db:
                self._db.execute("UPDATE meta SET value = ? WHERE key = 'seq'", (seq,))
                self._db.execute(
                    "INSERT INTO outbox (kind, event_id, seq, priority, event_type, payload,"
                    " created_ms, run) VALUES ('event', ?, ?, ?, ?, ?, ?, ?)",
                    (
                        event.id,
                        seq,
                        int(event.priority),
                        event.type,
                        event.model_dump_json().encode(),
                        now,
                        self.run,
                    ),
                )
                if attachment is not None:
                    self._db.execute(
                        "INSERT INTO outbox (kind, event_id, seq, priority, event_type, payload,"
                        " created_ms, run) VALUES ('snapshot', ?, NULL, ?, ?, ?, ?, ?)",
                        (event.id, int(Priority.SNAPSHOT), event.type, attachment, now, self.run),
                    )
        for wake in self._waiters:
            wake()
        return event

    def next_rows(
        self, after: dict[Priority, int], limit: int, skip: set[Priority] = frozenset()
    ) -> list[Row]:
        """Oldest rows of the most urgent classes first, past each class's cursor."""
        rows: list[Row] = []
        with self._lock:
            for prio in Priority:
                if len(rows) >= limit:
                    break
                if prio in skip:
                    continue
                cur = self._db.execute(
                    "SELECT rowid, kind, event_id, seq, priority, event_type, payload, run"
                    " FROM outbox WHERE priority = ? AND rowid > ? ORDER BY rowid LIMIT ?",
                    (int(prio), after.get(prio, 0), limit - len(rows)),
                )
                rows.extend(
                    Row(r[0], r[1], r[2], r[3], Priority(r[4]), r[5], r[6], r[7] < self.run)
                    for r in cur
                )
        return rows

    def ack(self, rowids: Iterable[int]) -> int:
        ids = [(i,) for i in rowids]
        if not ids:
            return 0
        with self._lock:
            self._db.execute("PRAGMA synchronous=NORMAL")
            with self._db:
                self._db.executemany("DELETE FROM outbox WHERE rowid = ?", ids)
        return len(ids)

    def depth(self) -> dict[str, int]:
        with self._lock:
            counts = dict(
                self._db.execute("SELECT priority, count(*) FROM outbox GROUP BY priority")
            )
        return {p.name.lower(): counts.get(int(p), 0) for p in Priority}

    def close(self) -> None:
        self.pending_after_close = sum(self.depth().values())
        with self._lock:
            self._db.close()
