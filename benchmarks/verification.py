"""Alarm-to-verification latency through the real stack, on this machine.

    .venv/bin/python benchmarks/verification.py [--alarms 30] [--detector-ms 0,200]
        [--scene 'person-crossing?fps=10&idle=0&steps=1000' --model MODEL.tflite]

For each alarm: a GPIO edge on the simulator's pins (PIR in an armed zone with
a camera) -> LinkageSink -> outbox -> Mosquitto -> a county subscriber, and
the verification job -> ``status.verification`` -> the same path. Reported:
edge -> alarm received, edge -> verdict received (both at the subscriber), and
the device's own ``data.latency_ms`` (alarm commit -> verdict, monotonic clock).

Two kinds of verifier: a STAND-IN that sleeps ``--detector-ms`` and answers
"person" (the machinery alone, plus a modelled detector time), and with
``--scene`` the real camera pipeline (simulator camera of real pictures) with
the real TFLite detector given by ``--model`` (agent/camera_verifier.py).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
from gpiozero.pins.mock import MockFactory

from shaobing.agent.config import load_config, validate_config
from shaobing.agent.runtime import Agent
from shaobing.agent.verification import VerificationResult
from shaobing.simulator.broker import Mosquitto
from shaobing.simulator.county import County
from shaobing.simulator.gpio import VirtualWiring

ROOT = Path(__file__).resolve().parents[1]


class StandInVerifier:
    """Not a detector: sleeps for the modelled detector time, answers "person"."""

    def __init__(self, detector_s: float):
        self.detector_s = detector_s
        ok, buf = cv2.imencode(".jpg", np.full((480, 640, 3), 90, dtype=np.uint8))
        assert ok
        self.jpeg = buf.tobytes()

    def verify(self, camera_ids, deadline, frames=5):
        time.sleep(self.detector_s)
        return VerificationResult(("person",), (0.9,), self.jpeg, camera_ids[0], frames)

    def snapshot(self, camera_id, deadline):
        return self.jpeg


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def spread(rows: list[dict], key: str) -> str:
    values = [r[key] for r in rows]
    picks = (statistics.median(values), percentile(values, 0.95), max(values))
    return " / ".join(f"{v:.1f}" for v in picks)


def run(
    alarms: int,
    detector_ms: float | None,
    workdir: Path,
    broker: Mosquitto,
    scene: str | None = None,
    model: Path | None = None,
) -> dict:
    """``scene`` and ``model`` given: the real camera pipeline and detector verify."""
    data = load_config(ROOT / "examples" / "village-post.yaml").model_dump(mode="json")
    data["mqtt"].update(host="127.0.0.1", port=broker.port, reconnect_max_s=2.0, tls=None)
    data["control"] = {"enabled": False}  # the bench sends no commands
    data["storage"]["path"] = str(workdir / f"outbox-{detector_ms or scene}.db")
    data["gpio"]["backend"] = "mock"
    data["health"]["interval_s"] = 3600
    for zone in data["zones"]:
        if zone["id"] == "crossing":
            zone["cameras"] = ["cam-1"]
    data["linkage"]["cooldown_s"] = 0
    data["linkage"]["verify"]["timeout_s"] = 10
    if scene:
        data["cameras"] = [{"id": "cam-1", "source": f"sim:{scene}"}]
        data["detector"] = {"model": str(model)}
    config = validate_config(data)
    alarm_at: dict[str, float] = {}
    verdicts: dict[str, tuple[float, dict]] = {}
    order: list[str] = []
    cond = threading.Condition()

    def on_message(item) -> None:
        if "/event/" not in item.topic:
            return
        now = time.monotonic()
        event = item.json()
        with cond:
            if event["type"] == "alarm.intrusion":
                alarm_at[event["id"]] = now
                order.append(event["id"])
            elif event["type"] == "status.verification":
                verdicts[event["data"]["alarm_id"]] = (now, event)
            cond.notify_all()

    county = County("127.0.0.1", broker.port, on_message=on_message)
    factory = MockFactory()
    stand_in = None if scene else StandInVerifier((detector_ms or 0) / 1000)
    agent = Agent(config, pin_factory=factory, verifier=stand_in)
    wiring = VirtualWiring(factory, config.inputs, config.outputs)
    wiring.rest()
    agent.start()
    agent.uplink.connected.wait(10)
    if scene:
        camera = agent.detection.camera("cam-1").camera
        while camera.latest() is None:
            time.sleep(0.05)
    rows = []
    try:
        for i in range(alarms):
            edge = time.monotonic()
            wiring.trigger("pir-1")
            with cond:
                if not cond.wait_for(lambda i=i: len(order) > i and order[i] in verdicts, 20):
                    raise TimeoutError("no verdict within 20 s")
                alarm_id = order[i]
                verdict_time, verdict = verdicts[alarm_id]
                rows.append(
                    {
                        "alarm_ms": (alarm_at[alarm_id] - edge) * 1000,
                        "verdict_ms": (verdict_time - edge) * 1000,
                        "device_ms": verdict["data"]["latency_ms"],
                        "result": verdict["data"]["result"],
                        "frames": verdict["data"]["frames"],
                    }
                )
            wiring.restore("pir-1")
            time.sleep(0.45)  # stimulus spacing: past the PIR's 200 ms debounce
    finally:
        agent.stop()
        county.close()
    label = f"real detector, sim:{scene}" if scene else f"stand-in, {detector_ms:g} ms"
    return {"verifier": label, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alarms", type=int, default=30)
    parser.add_argument("--detector-ms", default="0,200", help="comma-separated modelled times")
    parser.add_argument(
        "--scene",
        action="append",
        default=[],
        help="also run the real pipeline on this simulator scene (repeatable)",
    )
    parser.add_argument("--model", type=Path, help=".tflite model for --scene")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args(argv)
    broker = Mosquitto().start()
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="shaobing-bench-") as tmp:
            for ms in (float(x) for x in args.detector_ms.split(",") if x):
                results.append(run(args.alarms, ms, Path(tmp), broker))
            for scene in args.scene:
                results.append(run(args.alarms, None, Path(tmp), broker, scene, args.model))
    finally:
        broker.close()
    print(
        "| verifier | alarms | verified | frames p50 | edge -> alarm at platform, "
        "p50 / p95 / max (ms) | edge -> verdict at platform, p50 / p95 / max (ms) "
        "| device latency_ms p50 / max |"
    )
    print("|---|---|---|---|---|---|---|")
    for result in results:
        rows = result["rows"]
        device = [r["device_ms"] for r in rows]
        print(
            f"| {result['verifier']} | {len(rows)} | "
            f"{sum(r['result'] == 'verified' for r in rows)} | "
            f"{statistics.median(r['frames'] for r in rows):g} | {spread(rows, 'alarm_ms')} | "
            f"{spread(rows, 'verdict_ms')} | {statistics.median(device):.0f} / {max(device)} |"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
