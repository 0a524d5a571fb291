"""Command flow control under a flood, through the real stack, on this machine.

    .venv/bin/python benchmarks/commands.py [--pings 1000] [--runs 5] [--protocol 5]

Per run: a fresh agent (simulated GPIO) and a platform client on a real
Mosquitto. First one `disarm` on an idle channel (publish -> answer), then
``--pings`` QoS 1 pings published at once with an `arm` in the middle.
Reported (medians over the runs): answers (ok / busy; every command must get
one), time until the last answer, the `arm`'s publish -> answer time in the
flood and its ratio to the idle `disarm`, and how many ping answers came
before it (of those sent before it, about half the flood).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
from gpiozero.pins.mock import MockFactory
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from shaobing.agent.config import load_config, validate_config
from shaobing.agent.runtime import Agent
from shaobing.simulator.broker import Mosquitto

ROOT = Path(__file__).resolve().parents[1]


class Platform:
    """Publishes commands; collects answers with their arrival time (monotonic)."""

    def __init__(self, port: int, base: str, v5: bool):
        self.base, self.v5 = base, v5
        # In the device's reply lane (agent/reply_lane.py): .../cmd/response/{client}.
        self.reply = f"{base}/cmd/response/{uuid.uuid4().hex}" if v5 else f"{base}/cmd/response"
        self.answers: dict[str, tuple[float, dict]] = {}
        self.cond = threading.Condition()
        ready = threading.Event()
        protocol = mqtt.MQTTv5 if v5 else mqtt.MQTTv311
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=protocol)
        self.client.on_connect = lambda c, *_: c.subscribe(self.reply, qos=1)
        self.client.on_subscribe = lambda *_: ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not ready.wait(10):
            raise TimeoutError("platform client could not subscribe")

    def _on_message(self, client, userdata, msg) -> None:
        body = json.loads(msg.payload)
        with self.cond:
            self.answers.setdefault(body["id"], (time.monotonic(), body))
            self.cond.notify_all()

    def publish(self, command: str, args: dict | None = None) -> tuple[str, float]:
        now = int(time.time() * 1000)
        body = {"v": 1, "id": f"b-{uuid.uuid4().hex[:20]}", "issued_ms": now,
                "expires_ms": now + 600_000, "args": args or {}}  # fmt: skip
        props = None
        if self.v5:
            props = Properties(PacketTypes.PUBLISH)
            props.ResponseTopic = self.reply
        sent = time.monotonic()
        self.client.publish(f"{self.base}/cmd/{command}", json.dumps(body), qos=1, properties=props)
        return body["id"], sent

    def wait(self, ids: set[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not ids <= self.answers.keys():
                if not self.cond.wait(deadline - time.monotonic()):
                    missing = len(ids - self.answers.keys())
                    raise TimeoutError(f"{missing} commands never answered")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def run(pings: int, protocol: str, workdir: Path, broker: Mosquitto) -> dict:
    data = load_config(ROOT / "examples" / "village-post.yaml").model_dump(mode="json")
    data["mqtt"].update(port=broker.port, protocol=protocol)
    data["storage"]["path"] = str(workdir / f"outbox-{uuid.uuid4().hex[:8]}.db")
    data["gpio"]["backend"] = "mock"
    data["control"]["require_signature"] = False
    data["health"]["interval_s"] = 3600
    config = validate_config(data)
    agent = Agent(config, pin_factory=MockFactory())
    agent.start()
    platform = Platform(broker.port, agent.topics.base, protocol == "5")
    try:
        if not agent.uplink.connected.wait(10):
            raise TimeoutError("agent did not connect")
        for _ in range(50):  # the subscription is served after "online": wait for it
            probe, _sent = platform.publish("ping")
            try:
                platform.wait({probe}, 0.5)
                break
            except TimeoutError:
                continue
        idle_id, idle_sent = platform.publish("disarm", {"zones": ["crossing"]})
        platform.wait({idle_id}, 30)
        idle_ms = (platform.answers[idle_id][0] - idle_sent) * 1000
        start = time.monotonic()
        ids = [platform.publish("ping")[0] for _ in range(pings // 2)]
        arm_id, arm_sent = platform.publish("arm", {"zones": ["crossing"]})
        ids += [platform.publish("ping")[0] for _ in range(pings - pings // 2)]
        platform.wait(set(ids) | {arm_id}, 300)
        arm_at, arm_answer = platform.answers[arm_id]
        if not arm_answer["ok"]:
            raise RuntimeError(f"the arm failed: {arm_answer}")
        bodies = [platform.answers[i][1] for i in ids]
        return {
            "ok": sum(b["ok"] for b in bodies),
            "busy": sum(not b["ok"] and b["error"]["code"] == "busy" for b in bodies),
            "all_ms": (max(platform.answers[i][0] for i in ids) - start) * 1000,
            "idle_ms": idle_ms,
            "flood_ms": (arm_at - arm_sent) * 1000,
            "before": sum(platform.answers[i][0] < arm_at for i in ids),
        }
    finally:
        platform.close()
        agent.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pings", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--protocol", choices=["5", "3.1.1"], action="append")
    args = parser.parse_args(argv)
    broker = Mosquitto().start()
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for protocol in args.protocol or ["5", "3.1.1"]:
                runs = [run(args.pings, protocol, Path(tmp), broker) for _ in range(args.runs)]
                rows.append((protocol, runs))
    finally:
        broker.close()
    print(
        "| MQTT | pings | answered ok / busy | last answer (ms) | idle disarm (ms) "
        "| arm in the flood (ms) | ratio | ping answers before the arm |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for protocol, runs in rows:
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(
            f"| {protocol} | {args.pings} | {med['ok']:.0f} / {med['busy']:.0f} | "
            f"{med['all_ms']:.0f} | {med['idle_ms']:.1f} | {med['flood_ms']:.1f} | "
            f"{med['flood_ms'] / med['idle_ms']:.1f} | {med['before']:.0f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
