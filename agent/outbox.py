"""The SQLite outbox: the source of truth for everything not yet acknowledged.

Rows are written before any publish attempt and deleted only after a PUBACK
with a success reason code. paho's own queue only ever holds the bounded
in-flight window the uplink hands it.

One writer thread owns every write (inserts, acknowledgements, evictions) so
that concurrent alarms share one fsync (group commit) and nothing else ever
waits on the SD card except the code that raised an alarm.

Durability per class:
- alarm and fault events are *durable before accepted*: ``append`` returns
  only after the transaction holding them committed with ``synchronous=FULL``
  (WAL fsynced). A power cut after ``emit`` returned cannot lose them.
- status and snapshot events are batched in memory for at most
  ``batch_delay_s`` (default 1 s, or ``batch_max`` events) and then committed
  with ``synchronous=FULL`` too: one fsync a second at most spares the SD
  card, and a power cut loses at most the last second of telemetry.
- acknowledgements (deletes) commit with ``synchronous=NORMAL``: losing one in
  a power cut only causes a duplicate resend, which the platform drops by ``id``.

Sequence numbers are assigned in memory in the same step as queueing, and the
writer commits in queue order, so seq order is commit order. An event lost
from the in-memory batch by a crash was never published, so reusing its seq
after restart is invisible to the platform.
"""

from __future__ import annotations

import collections
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from shaobing.core.atomic import atomic_write, owner_only_database
from shaobing.core.events import Event, Priority

log = logging.getLogger("shaobing.outbox")

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
    run INTEGER NOT NULL,              -- agent run that wrote it: older runs are replays
    boot_id TEXT NOT NULL DEFAULT '',
    mono_ns INTEGER NOT NULL DEFAULT 0,
    clock_trusted INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS outbox_drain ON outbox (priority, rowid);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('seq', 0), ('run', 0);
"""
# Seq numbers reserved at a time in the high-water file beside the database.
SEQ_BLOCK = 1000
_INSERT = (
    "INSERT INTO outbox (kind, event_id, seq, priority, event_type, payload, created_ms, run,"
    " boot_id, mono_ns, clock_trusted) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


@dataclass(frozen=True)
class Budget:
    max_bytes: int | None = None
    max_rows: int | None = None
    # Age applies to status and snapshot rows only: an old alarm is still an alarm.
    max_age_s: float | None = None


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
    boot_id: str = ""
    mono_ns: int = 0
    clock_trusted: bool = True


@dataclass
class _Pending:
    event: Event
    attachment: bytes | None
    durable: bool
    enqueued: float
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class StorageCorrupt(Exception):
    pass


class OutboxClosed(RuntimeError):
    pass


class Outbox:
    def __init__(
        self,
        path: str | Path,
        budget: Budget | None = None,
        batch_delay_s: float = 1.0,
        batch_max: int = 500,
    ):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.budget = budget or Budget()
        self.batch_delay_s = batch_delay_s
        self.batch_max = batch_max
        self.recovered_from: Path | None = None
        self.corruption: str | None = None
        try:
            self._db = self._open()
        except (sqlite3.DatabaseError, StorageCorrupt) as exc:
            self.recovered_from = self._set_aside(exc)
            self._db = self._open()
        # The connection is shared by the writer and the uplink's reads;
        # the lock keeps a read from landing inside a write transaction.
        self._db_lock = threading.Lock()
        with self._db:
            self._db.execute("UPDATE meta SET value = value + 1 WHERE key = 'run'")
        self.run = self._meta("run")
        self.seq_file = self.path.with_name(f"{self.path.name}.seq")
        self._seq_reserved = self._read_seq_file()
        self._seq = self._meta("seq")
        if self.recovered_from is not None or self._seq == 0:
            # The rows of a set-aside (or deleted) database are gone with it: continue past
            # every seq it can have held, so seq never goes back and the loss shows as a gap.
            self._seq = max(self._seq, self._seq_reserved)
        self.dropped = {p.name.lower(): self._meta(f"dropped.{p.name.lower()}") for p in Priority}
        self._recount()
        # Rows evicted while maybe in flight: an ack for one means it was delivered after all.
        self._evicted: collections.OrderedDict[int, Priority] = collections.OrderedDict()
        self._waiters: list[Callable[[], None]] = []
        self._cond = threading.Condition()
        self._queue: collections.deque[_Pending] = collections.deque()
        self._durable_queued = 0
        self._acks: list[Row] = []
        self._acks_since = 0.0
        self._closing = False
        self._last_age_check = 0.0
        self.pending_after_close: int | None = None
        self._writer = threading.Thread(target=self._write_loop, name="outbox-writer", daemon=True)
        self._writer.start()

    # ---- opening and recovery -------------------------------------------
    def _open(self) -> sqlite3.Connection:
        owner_only_database(self.path)  # events and JPEG snapshots: owner-only
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
        # Python opens a transaction implicitly before DML; ``with db`` commits it.
        db.isolation_level = ""
        return db

    def _set_aside(self, exc: Exception) -> Path:
        aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(f"{self.path}{suffix}")
            if src.exists():
                src.rename(f"{aside}{suffix}")
        self.corruption = f"{type(exc).__name__}: {exc}"
        log.error(
            "outbox corrupt, set aside",
            extra={"fields": {"kept_as": str(aside), "reason": self.corruption}},
        )
        return aside

    def _read_seq_file(self) -> int:
        try:
            return int(self.seq_file.read_text())
        except FileNotFoundError:
            return 0
        except ValueError as exc:
            log.error(
                "outbox seq file unreadable, ignored",
                extra={"fields": {"path": str(self.seq_file), "reason": str(exc)}},
            )
            return 0

    def _reserve_seq(self, upto: int) -> None:
        """Before a commit holds seq ``upto``, make sure the file beside the database covers it."""
        if upto > self._seq_reserved:
            reserved = upto + SEQ_BLOCK
            atomic_write(self.seq_file, str(reserved))  # fsynced, file and directory
            self._seq_reserved = reserved

    def _meta(self, key: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else 0

    # ---- producers ------------------------------------------------------
    def on_append(self, callback: Callable[[bool], None]) -> None:
        """Called after each commit that added rows, with True if any was alarm/fault."""
        self._waiters.append(callback)

    def append(self, make_event: Callable[[int], Event], attachment: bytes | None = None) -> Event:
        """Assign the next seq and queue the event; alarm/fault classes return once committed."""
        with self._cond:
            if self._closing:
                raise OutboxClosed("outbox is closed")
            self._seq += 1
            event = make_event(self._seq)
            durable = event.priority <= Priority.FAULT
            pending = _Pending(event, attachment, durable, time.monotonic())
            self._queue.append(pending)
            self._durable_queued += durable
            self._cond.notify()
        if durable:
            pending.done.wait()
            if pending.error is not None:
                raise pending.error
        return event

    def ack(self, rows: Iterable[Row]) -> int:
        """Queue deletions of acknowledged rows (committed within ~50 ms)."""
        rows = list(rows)
        if rows:
            with self._cond:
                if not self._acks:
                    self._acks_since = time.monotonic()
                self._acks.extend(rows)
                self._cond.notify()
        return len(rows)

    # ---- the writer thread ------------------------------------------------
    def _write_loop(self) -> None:
        while True:
            with self._cond:
                batch, acks = self._next_batch()
                if batch is None:
                    return
            try:
                self._commit(batch, acks)
            except Exception as exc:  # disk full, I/O error: tell the waiters, keep going
                log.exception("outbox commit failed")
                for pending in batch:
                    pending.error = exc
            for pending in batch:
                pending.done.set()
            if batch:
                urgent = any(p.durable for p in batch)
                for wake in self._waiters:
                    wake(urgent)

    def _next_batch(self) -> tuple[list[_Pending] | None, list[Row]]:
        """Wait (holding the condition) until a batch is due; None when closed and empty."""
        while True:
            now = time.monotonic()
            deadlines = []
            if self._queue:
                if self._durable_queued or self._closing or len(self._queue) >= self.batch_max:
                    break
                deadlines.append(self._queue[0].enqueued + self.batch_delay_s)
            if self._acks:
                if self._closing or len(self._acks) >= 1000:
                    break
                deadlines.append(self._acks_since + 0.05)
            if deadlines and min(deadlines) <= now:
                break
            if self._closing and not self._queue and not self._acks:
                return None, []
            self._cond.wait(min(deadlines) - now if deadlines else None)
        batch = list(self._queue)
        self._queue.clear()
        self._durable_queued = 0
        acks, self._acks = self._acks, []
        return batch, acks

    def _commit(self, batch: list[_Pending], acks: list[Row]) -> None:
        now_ms = int(time.time() * 1000)
        if batch:
            self._reserve_seq(max(p.event.seq for p in batch))
        with self._db_lock:
            sync = "FULL" if batch else "NORMAL"
            self._db.execute(f"PRAGMA synchronous={sync}")
            try:
                with self._db:
                    if batch:
                        self._insert(batch, now_ms)
                    if acks:
                        self._delete_acked(acks)
                    self._evict(now_ms)
            except BaseException:
                # Rolled back: the counters moved inside the transaction, so read them back.
                self._recount()
                self.dropped = {
                    p.name.lower(): self._meta(f"dropped.{p.name.lower()}") for p in Priority
                }
                raise

    def _insert(self, batch: list[_Pending], now_ms: int) -> None:
        rows = []
        for p in batch:
            e = p.event
            common = (now_ms, self.run, e.boot_id, e.mono_ns, int(e.clock_trusted))
            body = e.model_dump_json().encode()
            rows.append(("event", e.id, e.seq, int(e.priority), e.type, body, *common))
            self._rows[e.priority] += 1
            self._bytes[e.priority] += len(body)
            if p.attachment is not None:
                snap = Priority.SNAPSHOT
                rows.append(("snapshot", e.id, None, int(snap), e.type, p.attachment, *common))
                self._rows[snap] += 1
                self._bytes[snap] += len(p.attachment)
        self._db.executemany(_INSERT, rows)
        self._db.execute(
            "UPDATE meta SET value = ? WHERE key = 'seq'", (max(p.event.seq for p in batch),)
        )

    def _delete_acked(self, acks: list[Row]) -> None:
        cur = self._db.executemany("DELETE FROM outbox WHERE rowid = ?", [(r.rowid,) for r in acks])
        if cur.rowcount == len(acks):
            for row in acks:
                self._rows[row.priority] -= 1
                self._bytes[row.priority] -= len(row.payload)
            return
        # Rare: a row evicted while in flight, or acknowledged twice after a resend.
        for row in acks:
            if self._evicted.pop(row.rowid, None) is not None:
                # Evicted, yet delivered: it was not lost after all.
                self._count_dropped(row.priority, -1)
        self._recount()

    def _recount(self) -> None:
        self._rows = dict.fromkeys(Priority, 0)
        self._bytes = dict.fromkeys(Priority, 0)
        for prio, rows, size in self._db.execute(
            "SELECT priority, count(*), coalesce(sum(length(payload)), 0) FROM outbox"
            " GROUP BY priority"
        ):
            self._rows[Priority(prio)], self._bytes[Priority(prio)] = rows, size

    def _evict(self, now_ms: int) -> None:
        budget = self.budget
        if budget.max_age_s and time.monotonic() - self._last_age_check > 10:
            self._last_age_check = time.monotonic()
            cutoff = now_ms - int(budget.max_age_s * 1000)
            for prio in (Priority.SNAPSHOT, Priority.STATUS):
                self._evict_where(prio, "created_ms < ?", (cutoff,))
        # Lowest class first, oldest first within it; alarms only when nothing else is left.
        for prio in sorted(Priority, reverse=True):
            while self._rows[prio] and self._over_budget():
                if not self._evict_oldest(prio):
                    break

    def _excess(self) -> tuple[int, int]:
        """(rows, bytes) above the budget, 0 where within it."""
        b = self.budget
        rows = sum(self._rows.values()) - b.max_rows if b.max_rows else 0
        size = sum(self._bytes.values()) - b.max_bytes if b.max_bytes else 0
        return max(rows, 0), max(size, 0)

    def _over_budget(self) -> bool:
        return any(self._excess())

    def _evict_oldest(self, prio: Priority) -> bool:
        """Evict the oldest rows of a class, exactly as many as bring the outbox within budget."""
        rows, size = self._excess()
        # Sizes are only known per row, so candidates come in small pages for the byte budget.
        candidates = self._db.execute(
            "SELECT rowid, length(payload) FROM outbox WHERE priority = ? ORDER BY rowid LIMIT ?",
            (int(prio), min(max(rows, 64 if size else 1), 1000)),
        ).fetchall()
        chosen = []
        for rowid, length in candidates:
            if rows <= 0 and size <= 0:
                break
            chosen.append(rowid)
            rows, size = rows - 1, size - length
        marks = ",".join("?" * len(chosen))
        self._evict_where(prio, f"rowid IN ({marks})", tuple(chosen))
        return bool(chosen)

    def _evict_where(self, prio: Priority, where: str, args: tuple) -> None:
        gone = self._db.execute(
            f"DELETE FROM outbox WHERE rowid IN (SELECT rowid FROM outbox WHERE priority = ?"
            f" AND {where}) RETURNING rowid, length(payload), kind",
            (int(prio), *args),
        ).fetchall()
        events = 0
        for rowid, size, kind in gone:
            self._rows[prio] -= 1
            self._bytes[prio] -= size
            if kind == "event" or prio == Priority.SNAPSHOT:
                events += 1
                self._evicted[rowid] = prio
        while len(self._evicted) > 100_000:
            self._evicted.popitem(last=False)
        if events:
            self._count_dropped(prio, events)
            log.warning(
                "outbox over budget: evicted",
                extra={"fields": {"class": prio.name.lower(), "rows": events}},
            )

    def _count_dropped(self, prio: Priority, n: int) -> None:
        key = prio.name.lower()
        self.dropped[key] += n
        self._db.execute(
            "INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = ?",
            (f"dropped.{key}", self.dropped[key], self.dropped[key]),
        )

    # ---- readers -----------------------------------------------------------
    def next_rows(
        self, after: dict[Priority, int], limit: int, skip: Iterable[Priority] = ()
    ) -> list[Row]:
        """Oldest rows of the most urgent classes first, past each class's cursor."""
        rows: list[Row] = []
        skip = set(skip)
        with self._db_lock:
            for prio in Priority:
                if len(rows) >= limit:
                    break
                if prio in skip:
                    continue
                cur = self._db.execute(
                    "SELECT rowid, kind, event_id, seq, priority, event_type, payload, run,"
                    " boot_id, mono_ns, clock_trusted FROM outbox"
                    " WHERE priority = ? AND rowid > ? ORDER BY rowid LIMIT ?",
                    (int(prio), after.get(prio, 0), limit - len(rows)),
                )
                rows.extend(
                    Row(
                        r[0],
                        r[1],
                        r[2],
                        r[3],
                        Priority(r[4]),
                        r[5],
                        r[6],
                        r[7] < self.run,
                        r[8],
                        r[9],
                        bool(r[10]),
                    )
                    for r in cur
                )
        return rows

    def depth(self) -> dict[str, int]:
        """Rows waiting per class, as the writer last committed them."""
        with self._cond:
            return {p.name.lower(): self._rows[p] for p in Priority}

    def holds(self, event_id: str) -> bool:
        """The event is still waiting for its PUBACK (the self-tests ask this)."""
        with self._db_lock:
            row = self._db.execute(
                "SELECT 1 FROM outbox WHERE event_id = ? LIMIT 1", (event_id,)
            ).fetchone()
        return row is not None

    def stored_bytes(self) -> int:
        return sum(self._bytes.values())

    def alive(self) -> bool:
        """The writer thread runs (the agent's liveness check; see core/watchdog.py)."""
        return self._writer.is_alive()

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything queued so far is committed (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._cond.notify()
        while time.monotonic() < deadline:
            with self._cond:
                if not self._queue and not self._acks:
                    break
                # Ask the writer to go now rather than at the batch deadline.
                self._acks_since = 0.0
                for p in self._queue:
                    p.enqueued = 0.0
                self._cond.notify()
            time.sleep(0.005)
        with self._db_lock:
            pass  # a commit in progress finishes before we return

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._writer.join(30)
        self.pending_after_close = sum(self.depth().values())
        with self._db_lock:
            self._db.close()
