"""Run the real Agent on the simulator's GPIO, as the demo does."""

from __future__ import annotations

from gpiozero.pins.mock import MockFactory

from shaobing.agent.config import Config
from shaobing.agent.runtime import Agent
from shaobing.cli.schemes import CAMERA_SCHEMES
from shaobing.simulator.gpio import VirtualWiring


class SimulatedPost:
    def __init__(self, config: Config, **agent_options):
        self.factory = MockFactory()
        agent_options.setdefault("camera_schemes", CAMERA_SCHEMES)
        self.agent = Agent(config, pin_factory=self.factory, **agent_options)
        self.wiring = VirtualWiring(self.factory, config.inputs, config.outputs)
        self.wiring.rest()
        self.agent.start()

    def stop(self) -> None:
        self.agent.stop()
