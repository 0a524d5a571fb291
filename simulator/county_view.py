"""What the demo's stand-in county sees, printed for a person: in seq order, readable.

The uplink publishes per class (alarms before faults before status), so the
county receives events out of seq order by design; this view holds each
event until the ones before it arrived (or ``hold_s`` passed: a gap), then
prints it with the sensor that raised it. Snapshots are saved as JPEG files
under ``snapshot_dir`` and their path is printed with their event.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from pathlib import Path

from shaobing.simulator.county import Received


def _where(e: dict) -> str:
    z = e.get("zone")
    if not z:
        return ""
    text = f"zone {z['id']}"
    if z.get("name"):
        text += f" ({z['name']})"
    if z.get("railway"):
        r = z["railway"]
        text += f" {r['line']} {r['start']}{'-' + r['end'] if r.get('end') else ''} {r['side']}"
    return text


def _classes(counts: dict[str, int]) -> str:
    busy = [f"{n} {c}" for c, n in counts.items() if n]
    return ", ".join(busy) if busy else "none"


def describe_health(d: dict) -> str:
    up = d.get("uplink") or {}
    parts = [
        f"up {d['uptime_s']:.0f} s",
        "link up" if up.get("connected") else "link DOWN",
        f"waiting to send: {_classes(d['outbox'])}",
        f"dropped: {_classes(d['dropped'])}",
    ]
    if d.get("cpu_temp_c") is not None:
        parts.append(f"CPU {d['cpu_temp_c']:.0f} °C")
    if d.get("disk_free_bytes") is not None:
        parts.append(f"disk {d['disk_free_bytes'] / 1e9:.1f} GB free")
    armed = d.get("arming") or {}
    if armed:
        parts.append("zones " + ", ".join(f"{z} {s}" for z, s in sorted(armed.items())))
    return "; ".join(parts)


def describe(e: dict) -> str:
    d = e.get("data") or {}
    kind = e["type"]
    src = e.get("source") or {}
    what = d.get("state", "") or d.get("phase", "")
    if kind.startswith(("alarm.", "fault.")):
        sensor = f" {d['sensor']}" if d.get("sensor") else ""
        what = f"{what} from {src.get('kind')}:{src.get('id')}{sensor}".strip()
        if d.get("label"):
            what += f" saw {d['label']} {d.get('score', 0):.2f}"
    elif kind == "status.health":
        what = describe_health(d)
    elif kind == "status.verification":
        pairs = zip(d["labels"], d["scores"], strict=True)
        seen = ", ".join(f"{label} {score:.2f}" for label, score in pairs)
        what = f"{d['result']} ({seen or d['reason']}) in {d['latency_ms']} ms"
    elif kind == "status.suppressed":
        what = f"{d['count']} x {d['alarm_type']} ({d['reason']})"
    elif kind == "status.acknowledge":
        what = f"{len(d['alarm_ids'])} alarm(s) acknowledged ({d['by']})"
    where = _where(e)
    again = " (sent again)" if e.get("replayed") else ""
    return f"seq={e['seq']:<4} {kind:<24} {what}{'  ' + where if where else ''}{again}"


class CountyView:
    def __init__(
        self,
        say: Callable[[str], None],
        snapshot_dir: Path,
        hold_s: float = 1.5,
        first_seq: int | None = 1,
    ):
        self._say = say
        self.snapshot_dir = snapshot_dir
        self._hold_s = hold_s
        self._lock = threading.Condition()
        self._heap: list[tuple[int, int, float, dict]] = []
        self._tie = itertools.count()
        self._expected = first_seq  # None: start from whatever comes first
        self._printed_ids: dict[str, int] = {}  # event id -> seq, once printed
        self._snapshots: dict[str, Path] = {}  # event id -> saved file, not yet printed
        self.saved: list[Path] = []
        self.printed_seqs: list[int] = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="county-view", daemon=True)
        self._thread.start()

    def on_message(self, item: Received) -> None:
        """paho's thread: file the message, print what is due."""
        if "/snapshot/" in item.topic:
            self._snapshot(item)
            return
        if item.topic.endswith("/state"):
            retained = " (retained)" if item.retain else ""
            self._say(f"[county] state   {item.json()['state']}{retained}")
            return
        event = item.json()
        with self._lock:
            heapq.heappush(self._heap, (event["seq"], next(self._tie), time.monotonic(), event))
            self._release(force=False)
            self._lock.notify_all()

    def _snapshot(self, item: Received) -> None:
        event_id = item.topic.rsplit("/", 1)[-1]
        self.snapshot_dir.mkdir(parents=True, exist_ok=True)
        path = self.snapshot_dir / f"{event_id}.jpg"
        path.write_bytes(item.payload)
        with self._lock:
            self.saved.append(path)
            seq = self._printed_ids.get(event_id)
            if seq is None:
                self._snapshots[event_id] = path  # printed with its event
                return
        self._say(f"[county]          snapshot of seq={seq}: {path}")

    def _release(self, force: bool) -> None:
        """With the lock held: print every event whose turn has come."""
        now = time.monotonic()
        while self._heap:
            seq, _, arrived, event = self._heap[0]
            due = self._expected is None or seq <= self._expected
            if not (due or force or now - arrived >= self._hold_s):
                return
            heapq.heappop(self._heap)
            if self._expected is not None and seq > self._expected:
                self._say(f"[county] (seq {self._expected}..{seq - 1} not received yet)")
            if self._expected is None or seq >= self._expected:
                self._expected = seq + 1
            self.printed_seqs.append(seq)
            self._printed_ids[event["id"]] = seq
            self._say(f"[county] {describe(event)}")
            path = self._snapshots.pop(event["id"], None)
            if path:
                self._say(f"[county]          snapshot: {path}")

    def _run(self) -> None:
        with self._lock:
            while not self._stop:
                self._lock.wait(0.2)
                self._release(force=False)

    def close(self) -> None:
        """Print whatever is still held, in order."""
        with self._lock:
            self._stop = True
            self._release(force=True)
            self._lock.notify_all()
        self._thread.join(2)
