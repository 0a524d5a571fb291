"""The console as one of the agent's components: backend + app + server, started and stopped."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shaobing.agent.console.app import ConsoleState, build_app
from shaobing.agent.console.auth import LoginLimiter
from shaobing.agent.console.backend import AgentConsole
from shaobing.agent.console.config import ConsoleConfig
from shaobing.agent.console.server import ConsoleServer

if TYPE_CHECKING:
    from shaobing.agent.runtime import Agent


class Console:
    name = "console"

    def __init__(self, agent: Agent, cfg: ConsoleConfig):
        self.backend = AgentConsole(agent)
        limiter = LoginLimiter(attempts=cfg.max_attempts, window_s=cfg.lockout_s)
        self.state = ConsoleState(cfg=cfg, backend=self.backend, limiter=limiter)
        self.server = ConsoleServer(build_app(self.state), cfg.listen, cfg.port)

    @property
    def urls(self) -> list[str]:
        return self.server.urls

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop()

    def alive(self) -> bool:
        return self.server.alive()
