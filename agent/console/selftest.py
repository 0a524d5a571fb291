"""The console's self-test: the provisioning checks, asked of the running agent.

``shaobing provision`` opens pins, ports and cameras itself; inside a running
agent they are already open (a GPIO pin or a V4L2 device cannot be opened
twice), so each check here asks the component that owns it, through its public
state: inputs read, outputs set, serial devices answering, cameras delivering,
the detector inferring, and a test event acknowledged by the county broker.
Rows have the provisioning report's shape (kind, name, status, reason).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from shaobing.core.events import Source

if TYPE_CHECKING:
    from shaobing.agent.runtime import Agent

PASS, FAIL, WARN = "pass", "fail", "warn"


@dataclass
class Row:
    kind: str
    name: str
    status: str
    reason: str


def _gpio(agent: Agent) -> list[Row]:
    state = agent.inputs.state()
    rows = []
    for cfg in agent.config.inputs:
        value = state.get(cfg.id)
        if value is None:
            rows.append(Row("gpio_input", cfg.id, FAIL, "not read"))
        elif value == "alarm":
            rows.append(Row("gpio_input", cfg.id, WARN, "in alarm now: check the sensor"))
        else:
            rows.append(Row("gpio_input", cfg.id, PASS, f"{value} (pin {cfg.pin})"))
    outputs = agent.outputs.state()
    for cfg in agent.config.outputs:
        value = outputs.get(cfg.id)
        status = PASS if value is not None else FAIL
        rows.append(Row("gpio_output", cfg.id, status, f"{value} (pin {cfg.pin})"))
    return rows


def _serial(agent: Agent) -> list[Row]:
    rows = []
    for name, info in agent.serial.state().items():
        online = info.get("online", True) if isinstance(info, dict) else True
        status = PASS if online else FAIL
        rows.append(Row("serial", name, status, "answering" if online else "not answering"))
    return rows


def _cameras(agent: Agent) -> list[Row]:
    if agent.detection is None:
        configured = [c.id for c in agent.config.cameras if c.enabled]
        return [Row("model", "detector", FAIL, agent.detector_fault or "not loaded")] * bool(
            configured
        )
    rows = []
    for s in agent.detection.stats():
        ok = s.state == "up" and s.captured > 0
        reason = f"{s.state}, {s.capture_fps:.1f} fps, {s.captured} frames"
        rows.append(Row("camera", s.id, PASS if ok else FAIL, reason))
    infer = sum(s.inferences for s in agent.detection.stats())
    rows.append(
        Row(
            "model",
            agent.config.detector.model,
            PASS if infer else WARN,
            f"{infer} inferences" if infer else "no inference yet (no motion seen)",
        )
    )
    return rows


def _broker(agent: Agent, timeout_s: float, sleep: Callable[[float], None]) -> Row:
    name = f"{agent.config.mqtt.host}:{agent.config.mqtt.port}"
    if not agent.uplink.connected.is_set():
        return Row("broker", name, FAIL, "not connected")
    event = agent.recorder.emit(
        "status.selftest",
        Source(kind="agent", id="console"),
        data={"purpose": "console self-test"},
    )
    agent.outbox.flush()
    deadline = time.monotonic() + timeout_s
    while agent.outbox.holds(event.id):
        if time.monotonic() > deadline:
            return Row("broker", name, FAIL, f"test event not acknowledged in {timeout_s:g} s")
        sleep(0.05)
    return Row("broker", name, PASS, f"test event {event.id} acknowledged")


def run_selftest(
    agent: Agent, broker_timeout_s: float = 20.0, sleep: Callable[[float], None] = time.sleep
) -> dict[str, Any]:
    rows = [*_gpio(agent), *_serial(agent), *_cameras(agent)]
    rows.append(_broker(agent, broker_timeout_s, sleep))
    return {
        "device": agent.config.device.id,
        "ts": int(time.time() * 1000),
        "ok": all(r.status != FAIL for r in rows),
        "results": [asdict(r) for r in rows],
    }
