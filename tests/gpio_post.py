"""A simulated post in a process of its own: the real Agent on MockFactory pins.

Usage: ``python tests/gpio_post.py CONFIG WIRING``. WIRING is a JSON file with
the list of input ids in alarm; every other input rests. It is read before
the agent starts (so the first reading sees it) and then every 20 ms, so a
test moves the inputs of a process it can SIGKILL.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

from gpiozero.pins.mock import MockFactory

from shaobing.agent import logs
from shaobing.agent.config import load_config
from shaobing.agent.runtime import Agent
from shaobing.simulator.gpio import VirtualWiring


def read_wiring(path: Path) -> set[str]:
    try:
        return set(json.loads(path.read_text()))
    except (FileNotFoundError, ValueError):
        return set()  # being rewritten: keep what was there


def main(config_path: str, wiring_path: str) -> int:
    logs.setup("INFO")
    config = load_config(Path(config_path))
    factory = MockFactory()
    agent = Agent(config, pin_factory=factory, config_path=Path(config_path))
    wiring = VirtualWiring(factory, config.inputs, config.outputs)
    path = Path(wiring_path)
    applied: set[str] | None = None

    def apply() -> None:
        nonlocal applied
        want = read_wiring(path) if path.exists() else set()
        if want == applied:
            return
        for cfg in config.inputs:
            wiring.trigger(cfg.id) if cfg.id in want else wiring.restore(cfg.id)
        applied = want

    apply()
    stop = threading.Event()

    def follow() -> None:
        while not stop.wait(0.02):
            apply()

    threading.Thread(target=follow, name="wiring", daemon=True).start()
    try:
        agent.run_until_signalled()
    finally:
        stop.set()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
