"""Outbox and uplink benchmark: one run, one machine, ratios side by side.

    .venv/bin/python benchmarks/outbox.py [--backlog 100000] [--json]

Measures, against a local Mosquitto started on a free port:
- events/s accepted with alarm durability (fsync per group commit), 1 and 16 threads
- events/s accepted with batched durability (status class)
- bare paho QoS 1 publish rate (no outbox), and the outbox drain rate as a ratio of it
- time to drain the backlog
- create -> PUBACK latency p50/p99 for live alarms, idle and while draining, and
  where a live alarm waits while draining (commit, handed to paho, PUBACK)
- peak RSS
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from shaobing.agent.config import MqttConfig, load_config
from shaobing.agent.outbox import Outbox
from shaobing.agent.recorder import Recorder
from shaobing.agent.topics import Topics
from shaobing.agent.uplink import Uplink
from shaobing.core.clock import Clock
from shaobing.core.events import Source
from shaobing.simulator.broker import Mosquitto

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "village-post.yaml"
SRC = Source(kind="bench", id="bench")


class TimedOutbox(Outbox):
    """Records when each event's PUBACK reached the outbox (instrumentation only)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.acked_at: dict[str, float] = {}

    def ack(self, rows):
        rows = list(rows)
        now = time.perf_counter()
        for row in rows:
            self.acked_at[row.event_id] = now
        return super().ack(rows)


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def accept_rate(tmp: Path, event_type: str, threads: int, seconds: float) -> float:
    config = load_config(EXAMPLE)
    outbox = Outbox(tmp / f"accept-{event_type}-{threads}.db")
    rec = Recorder(config, outbox, Clock(trust="always"))
    stop = time.perf_counter() + seconds
    counts = [0] * threads

    def work(i: int) -> None:
        while time.perf_counter() < stop:
            rec.emit(event_type, SRC, zone="crossing", data={"n": counts[i]})
            counts[i] += 1

    started = time.perf_counter()
    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    outbox.flush()
    elapsed = time.perf_counter() - started
    outbox.close()
    return sum(counts) / elapsed


def bare_paho_rate(port: int, n: int, window: int, payload: bytes) -> float:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(window)
    done = threading.Event()
    acked = [0]

    def on_publish(*_):
        acked[0] += 1
        if acked[0] == n:
            done.set()

    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    started = time.perf_counter()
    for i in range(n):
        client.publish(f"bench/bare/{i % 10}", payload, qos=1)
    done.wait(300)
    elapsed = time.perf_counter() - started
    client.disconnect()
    client.loop_stop()
    return n / elapsed


def time_alarm_publishes(uplink: Uplink) -> dict[str, float]:
    """When the uplink handed each alarm to paho (instrumentation only)."""
    published: dict[str, float] = {}
    publish = uplink.client.publish

    def timed(topic, payload=None, qos=0, **kw):
        if "/alarm" in topic:
            published[json.loads(payload)["id"]] = time.perf_counter()
        return publish(topic, payload, qos=qos, **kw)

    uplink.client.publish = timed
    return published


def live_latencies(
    rec: Recorder,
    outbox: TimedOutbox,
    count: int,
    gap_s: float,
    published: dict[str, float] | None = None,
    stages: dict[str, list[float]] | None = None,
) -> list[float]:
    """emit -> PUBACK (ms) of ``count`` alarms; with ``published`` and ``stages``, also
    where each waited: emit -> committed, -> handed to paho, -> PUBACK."""
    created: dict[str, tuple[float, float]] = {}
    for _ in range(count):
        t0 = time.perf_counter()
        event = rec.emit("alarm.perimeter", SRC, zone="crossing")
        created[event.id] = (t0, time.perf_counter())
        time.sleep(gap_s)
    deadline = time.monotonic() + 30
    while not created.keys() <= outbox.acked_at.keys() and time.monotonic() < deadline:
        time.sleep(0.01)
    done = {i: t for i, t in created.items() if i in outbox.acked_at}
    if published is not None and stages is not None:
        for i, (t0, t1) in done.items():
            if i in published:
                stages.setdefault("commit", []).append((t1 - t0) * 1000)
                stages.setdefault("to_paho", []).append((published[i] - t1) * 1000)
                stages.setdefault("to_puback", []).append(
                    (outbox.acked_at[i] - published[i]) * 1000
                )
    return [(outbox.acked_at[i] - t0) * 1000 for i, (t0, _t1) in done.items()]


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--backlog", type=int, default=100_000)
    p.add_argument("--json", action="store_true")
    p.add_argument("--window", type=int, default=MqttConfig().inflight_window)
    p.add_argument("--switch-interval", type=float, default=None)
    args = p.parse_args()
    if args.switch_interval:
        import sys

        sys.setswitchinterval(args.switch_interval)
    tmp = Path(tempfile.mkdtemp(prefix="shaobing-bench-"))
    results: dict[str, float | int | str] = {}

    results["accept_alarm_1_thread_eps"] = accept_rate(tmp, "alarm.perimeter", 1, 2.0)
    results["accept_alarm_16_threads_eps"] = accept_rate(tmp, "alarm.perimeter", 16, 3.0)
    results["accept_status_batched_eps"] = accept_rate(tmp, "status.telemetry", 1, 2.0)

    broker = Mosquitto().start()
    try:
        config = load_config(EXAMPLE)
        # Raw uplink capacity: no replay cap (mqtt.replay_rate) in the way.
        mqtt_cfg = MqttConfig(port=broker.port, inflight_window=args.window, replay_rate=None)
        outbox = TimedOutbox(tmp / "drain.db")
        rec = Recorder(config, outbox, Clock(trust="always"))
        topics = Topics(mqtt_cfg.topic_prefix, config.site.village_code, config.device.id)
        sample = rec.emit("status.telemetry", SRC, data={"n": 0})
        payload = sample.model_dump_json().encode()
        results["payload_bytes"] = len(payload)
        # The machine is shared: bare paho is measured before and after the
        # drain, and the ratio uses the median of the three runs.
        bare = [bare_paho_rate(broker.port, 20_000, mqtt_cfg.inflight_window, payload)]
        bare.append(bare_paho_rate(broker.port, 20_000, mqtt_cfg.inflight_window, payload))

        for i in range(args.backlog - 1):
            rec.emit("status.telemetry", SRC, data={"n": i})
        outbox.flush(60)
        uplink = Uplink(mqtt_cfg, "bench-device", topics, outbox, lambda: {})
        published = time_alarm_publishes(uplink)
        uplink.start()
        if not uplink.connected.wait(10):
            raise RuntimeError("uplink did not connect")
        idle = live_latencies(rec, outbox, 5, 0.01)  # warm-up, discarded below
        started = time.perf_counter()
        stages: dict[str, list[float]] = {}
        during = live_latencies(rec, outbox, 200, 0.02, published, stages)
        while sum(outbox.depth().values()) > 0:
            time.sleep(0.01)
        drain_s = time.perf_counter() - started
        bare.append(bare_paho_rate(broker.port, 20_000, mqtt_cfg.inflight_window, payload))
        results["bare_paho_qos1_msgs_per_s"] = statistics.median(bare)
        results["bare_paho_runs"] = ", ".join(f"{b:.0f}" for b in bare)
        results["backlog_events"] = args.backlog
        results["backlog_drain_s"] = drain_s
        results["drain_eps"] = args.backlog / drain_s
        results["drain_vs_bare_paho"] = results["drain_eps"] / results["bare_paho_qos1_msgs_per_s"]
        idle = live_latencies(rec, outbox, 200, 0.02)
        results["live_alarm_idle_p50_ms"] = statistics.median(idle)
        results["live_alarm_idle_p99_ms"] = percentile(idle, 0.99)
        results["live_alarm_draining_p50_ms"] = statistics.median(during)
        results["live_alarm_draining_p99_ms"] = percentile(during, 0.99)
        for stage, values in stages.items():  # where a live alarm waited while draining
            results[f"draining_{stage}_p50_ms"] = statistics.median(values)
            results[f"draining_{stage}_p99_ms"] = percentile(values, 0.99)
        uplink.stop()
        outbox.close()
    finally:
        broker.close()
    results["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for key, value in results.items():
            print(f"{key:32} {value:,.2f}" if isinstance(value, float) else f"{key:32} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
