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
  They never share a transaction with alarm/fault inserts: those commit first,
  so a live alarm's fsync does not wait for a draining backlog's deletes.
- an event that answers a device frame (``DeviceFrame``: a Contact ID message
  the host waits to have ACKed) is durable before accepted whatever its class,
  and its frame is written to the ``frames`` table in the same transaction, so
  a resend of a frame committed but not yet ACKed before a crash is recognised
  after the restart (``recent_frames``).

Sequence numbers are assigned in memory in the same step as queueing, and the
writer commits in queue order, so seq order is commit order. No seq is ever
handed out before ``outbox.db.seq`` (fsynced) covers it, and after an unclean
stop the next run continues past that mark: a seq an event lost in a crash may
have had (logged, never committed) is never given to another event.
``seq_skipped`` names the range this start skipped and ``seq_skips`` those of the
last ``SKIPS_KEPT`` starts (kept in the database before any event is taken, so a
report lost with a run that died young is repeated by the next); a clean
``close`` lowers the mark to the last seq so a clean restart skips nothing.
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

from shaobing.agent.conditions import Change, Key, OpenCondition
from shaobing.core.atomic import atomic_write, make_dirs, owner_only_database
from shaobing.core.events import DeviceFrame, Event, FrameMark, NotYetDurable, Priority
from shaobing.core.worker import ThreadWorker

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
-- Device frames committed with the event each produced: the durable duplicate window.
CREATE TABLE IF NOT EXISTS frames (
    rowid INTEGER PRIMARY KEY AUTOINCREMENT,
    scope TEXT NOT NULL,
    frame TEXT NOT NULL,
    event_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS frames_scope ON frames (scope, rowid);
-- Seq ranges skipped by the last starts (after crashes), for status.health.
CREATE TABLE IF NOT EXISTS seq_skips (
    run INTEGER PRIMARY KEY,
    first INTEGER NOT NULL,
    last INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta VALUES ('seq', 0), ('run', 0);
-- Open conditions (agent/conditions.py), written in the transaction of the event
-- that opens or closes each one.
CREATE TABLE IF NOT EXISTS conditions (
    source_kind TEXT NOT NULL,
    source_id TEXT NOT NULL,
    zone TEXT NOT NULL,
    condition TEXT NOT NULL,
    channel TEXT NOT NULL,             -- device zone where several share one zone; '' if none
    event_id TEXT NOT NULL,            -- the event that opened it
    seq INTEGER NOT NULL,
    run INTEGER NOT NULL,
    opened_ms INTEGER NOT NULL,        -- the opening event's ts
    PRIMARY KEY (source_kind, source_id, zone, condition, channel)
);
"""
# Seq numbers reserved at a time in the high-water file beside the database.
SEQ_BLOCK = 1000
# The frames table keeps this many frames per scope, none older than FRAMES_MAX_AGE_S:
# a host resends its last message for seconds, not hours.
FRAMES_PER_SCOPE = 16
FRAMES_MAX_AGE_S = 3600
# status.health repeats the ranges skipped by this many of the last starts.
SKIPS_KEPT = 8
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
    condition: Change | None = None
    frame: DeviceFrame | None = None
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    def committed(self, timeout: float) -> bool:
        """True once committed, False if still queued; the commit's error if it failed."""
        if not self.done.wait(timeout):
            return False
        if self.error is not None:
            raise self.error
        return True


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
        make_dirs(self.path.parent, mode=0o777)  # durable entries, the umask's mode
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
        # Held by the writer from taking a batch until all of it is committed.
        self._turn = threading.Lock()
        with self._db:
            self._db.execute("UPDATE meta SET value = value + 1 WHERE key = 'run'")
        self.run = self._meta("run")
        self.seq_file = self.path.with_name(f"{self.path.name}.seq")
        self._seq_lock = threading.Lock()  # one writer of the seq file at a time
        self._seq_reserved = self._read_seq_file()
        self._seq = self._meta("seq")
        # Past the mark, always: after a crash, seqs up to it may have been given to
        # events that were lost uncommitted (or, after a set-aside, to rows lost with
        # the damaged file). Skipping them makes every such loss a gap the platform
        # sees, and ``seq_skipped`` (status.health) says which gap a start made.
        self.seq_skipped: tuple[int, int] | None = None
        if self._seq_reserved > self._seq:
            self.seq_skipped = (self._seq + 1, self._seq_reserved)
            self._seq = self._seq_reserved
            log.warning(
                "outbox seq skipped at start",
                extra={"fields": {"from": self.seq_skipped[0], "to": self.seq_skipped[1]}},
            )
        self.seq_skips = self._record_skip()
        self._prune_frames()
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
        self._stopping = threading.Event()
        self.writer = ThreadWorker("outbox-writer", self._write_loop, self._stopping)
        self.writer.start()

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
        """Before seq ``upto`` is handed out, make sure the file beside the database covers it."""
        with self._seq_lock:
            if upto > self._seq_reserved:
                reserved = upto + SEQ_BLOCK
                atomic_write(self.seq_file, str(reserved))  # fsynced, file and directory
                self._seq_reserved = reserved

    def _record_skip(self) -> list[tuple[int, int, int]]:
        """Keep this start's skip with the last ones; (run, first, last) of each, oldest first."""
        with self._db_lock:
            self._db.execute("PRAGMA synchronous=FULL")
        with self._db_lock, self._db:
            if self.seq_skipped is not None:
                self._db.execute(
                    "INSERT OR REPLACE INTO seq_skips VALUES (?, ?, ?)",
                    (self.run, *self.seq_skipped),
                )
                self._db.execute(
                    "DELETE FROM seq_skips WHERE run NOT IN"
                    " (SELECT run FROM seq_skips ORDER BY run DESC LIMIT ?)",
                    (SKIPS_KEPT,),
                )
            return self._db.execute(
                "SELECT run, first, last FROM seq_skips ORDER BY run"
            ).fetchall()

    def _prune_frames(self) -> None:
        cutoff = int((time.time() - FRAMES_MAX_AGE_S) * 1000)
        with self._db_lock, self._db:
            self._db.execute("DELETE FROM frames WHERE ts_ms < ?", (cutoff,))

    def _meta(self, key: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else 0

    # ---- producers ------------------------------------------------------
    def on_append(self, callback: Callable[[bool], None]) -> None:
        """Called after each commit that added rows, with True if any was alarm/fault."""
        self._waiters.append(callback)

    def append(
        self,
        make_event: Callable[[int], Event],
        attachment: bytes | None = None,
        condition: Change | None = None,
        frame: DeviceFrame | None = None,
    ) -> Event:
        """Assign the next seq and queue the event.

        Alarm/fault classes, any event starting or ending an open condition, and any
        event answering a device ``frame`` return once committed; with a frame, after at
        most ``frame.wait_s`` (else ``NotYetDurable``).

        ``condition``: the open condition the event starts or ends, written to the
        ``conditions`` table in the event's own transaction (agent/conditions.py).
        """
        with self._cond:
            if self._closing:
                raise OutboxClosed("outbox is closed")
            # The writer reserves ahead (see _commit); this fsync on the producer's
            # path only happens if a burst outruns it.
            if self._seq + 1 > self._seq_reserved:
                self._reserve_seq(self._seq + 1)
            self._seq += 1
            event = make_event(self._seq)
            # A condition's start or end, and a device's frame, never wait in a telemetry batch.
            durable = event.priority <= Priority.FAULT or condition is not None or frame is not None
            pending = _Pending(event, attachment, durable, time.monotonic(), condition, frame)
            self._queue.append(pending)
            self._durable_queued += durable
            self._cond.notify()
        if not durable:
            return event
        if frame is None:
            pending.done.wait()
        elif not pending.done.wait(frame.wait_s):
            raise NotYetDurable(event.id, pending.committed)
        if pending.error is not None:
            raise pending.error
        return event

    def recent_frames(self, scope: str) -> list[FrameMark]:
        """Frames of ``scope`` committed with their events, oldest first."""
        with self._db_lock:
            rows = self._db.execute(
                "SELECT scope, frame, event_id, seq, ts_ms FROM frames WHERE scope = ?"
                " ORDER BY rowid",
                (scope,),
            ).fetchall()
        return [FrameMark(*r) for r in rows]

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
                self._turn.acquire()  # taken before the queue looks empty to ``flush``
            try:
                if acks and any(p.durable for p in batch):
                    # Durable events alone first: a live alarm's commit (and the uplink's
                    # wake-up) does not wait for the deletes of a draining backlog's acks.
                    self._commit_and_tell(batch, [])
                    self._commit_and_tell([], acks)
                else:
                    self._commit_and_tell(batch, acks)
            finally:
                self._turn.release()

    def _commit_and_tell(self, batch: list[_Pending], acks: list[Row]) -> None:
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
        if batch and self._seq + SEQ_BLOCK // 2 > self._seq_reserved:
            # Half the block used: reserve the next one here, off the producers' path.
            self._reserve_seq(self._seq + SEQ_BLOCK // 2)
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
        for p in batch:
            if p.condition is not None:
                self._apply_condition(p.condition, p.event)
        marks = [
            (p.frame.scope, p.frame.frame, p.event.id, p.event.seq, now_ms)
            for p in batch
            if p.frame
        ]
        if marks:
            self._db.executemany(
                "INSERT INTO frames (scope, frame, event_id, seq, ts_ms) VALUES (?, ?, ?, ?, ?)",
                marks,
            )
            for scope in {m[0] for m in marks}:
                self._db.execute(
                    "DELETE FROM frames WHERE scope = ? AND rowid NOT IN"
                    " (SELECT rowid FROM frames WHERE scope = ? ORDER BY rowid DESC LIMIT ?)",
                    (scope, scope, FRAMES_PER_SCOPE),
                )

    def _apply_condition(self, change: Change, event: Event) -> None:
        k = change.key
        where = (k.source_kind, k.source_id, k.zone, k.condition, k.channel)
        if change.opens:
            # A repeat start (an alarm host reporting the same zone again) keeps the first.
            self._db.execute(
                "INSERT OR IGNORE INTO conditions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*where, event.id, event.seq, self.run, event.ts),
            )
        else:
            self._db.execute(
                "DELETE FROM conditions WHERE source_kind = ? AND source_id = ? AND zone = ?"
                " AND condition = ? AND channel = ?",
                where,
            )

    def open_conditions(self) -> list[OpenCondition]:
        """The ledger of open conditions as last committed (read at start)."""
        with self._db_lock:
            rows = self._db.execute(
                "SELECT source_kind, source_id, zone, condition, channel, event_id, seq, run,"
                " opened_ms"
                " FROM conditions ORDER BY seq"
            ).fetchall()
        return [OpenCondition(Key(*r[:5]), r[5], r[6], r[7], r[8]) for r in rows]

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
        return self.writer.is_running()

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
        with self._turn:
            pass  # the writer's turn in progress (one or two commits) ends before we return

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify()
        self.writer.join(30)
        self._stopping.set()
        self.pending_after_close = sum(self.depth().values())
        with self._db_lock:
            committed = self._meta("seq")
            self._db.close()
        clean = not self.writer.is_running() and committed == self._seq
        if clean and self._read_seq_file() == self._seq_reserved:
            # A clean stop: every seq handed out is committed, so the next run
            # starts right after it and reports nothing skipped. (Not if another
            # process moved the mark meanwhile: that one may still hand seqs out.)
            try:
                atomic_write(self.seq_file, str(committed))
                self._seq_reserved = committed
            except OSError as exc:
                log.error("outbox seq mark not lowered", extra={"fields": {"error": str(exc)}})
