"""Config and waiting helpers shared by the linkage and control tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import config_for

from shaobing.agent.config import Config, validate_config

DEFAULT_LINKAGE: dict[str, Any] = {
    "cooldown_s": 30,
    "verify": {"timeout_s": 5},
    "rules": [
        {
            "zone": "crossing",
            "outputs": [
                {"output": "siren-1", "duration_s": 1.0},
                {"output": "strobe-1", "duration_s": 1.0, "on_s": 0.1, "off_s": 0.1},
            ],
        }
    ],
}


def linkage_config(
    tmp_path: Path,
    port: int,
    *,
    arming: dict | None = None,
    linkage: dict | None = None,
    control: dict | None = None,
    cameras: list[str] | None = None,
    tamper_zone: str | None = None,
    **mqtt: object,
) -> Config:
    data = config_for(tmp_path, port, **mqtt).model_dump(mode="json")
    for zone in data["zones"]:
        if zone["id"] == "crossing":
            zone["cameras"] = ["cam-1"] if cameras is None else cameras
    if tamper_zone:
        for item in data["inputs"]:
            if item["id"] == "tamper-1":
                item["zone"] = tamper_zone
    data["arming"] = arming if arming is not None else {"default_mode": "armed"}
    data["linkage"] = linkage if linkage is not None else DEFAULT_LINKAGE
    data["control"] = {**data["control"], **(control or {})}  # keeps the county key
    config = validate_config(data)
    assert config is not None
    return config


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def pin_on_periods(pin, active_high: bool = True) -> list[float]:
    """Durations (s) of every completed 'on' period in a MockPin's history."""
    on_value = bool(active_high)
    periods: list[float] = []
    current: float | None = None
    for entry in pin.states[1:]:
        # MockPin timestamps are the time since the previous state change.
        if current is not None:
            current += entry.timestamp
        if bool(entry.state) == on_value and current is None:
            current = 0.0
        elif bool(entry.state) != on_value and current is not None:
            periods.append(current)
            current = None
    return periods
