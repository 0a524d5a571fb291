"""What the console may do to the running agent, through the agent's public interfaces only.

No outbox rows, paho or driver internals: status comes from the health
sections, frames from ``DetectionPipeline.view``, zone changes go through
``ConfigEditor`` (the one config-write path, as for ``set_config``), arm
changes through ``Arming`` and the linkage exactly as the platform's
commands do, and every change is recorded as an event.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shaobing.agent.arming import ArmingError
from shaobing.agent.config_commands import ConfigChangeError, config_data
from shaobing.agent.console.render import annotate
from shaobing.agent.console.selftest import run_selftest
from shaobing.agent.console.walk import WalkTest, walk_items
from shaobing.agent.status_file import certificate_expiry
from shaobing.core.events import Source

if TYPE_CHECKING:
    from shaobing.agent.runtime import Agent

SOURCE = Source(kind="console", id="console")


class ConsoleError(Exception):
    def __init__(self, code: str, message: str, details: list[dict] | None = None):
        super().__init__(message)
        self.code, self.message, self.details = code, message, details or []


class AgentConsole:
    def __init__(self, agent: Agent):
        self._agent = agent
        self.walk = WalkTest(walk_items(agent.config))
        agent.sink.observe(self.walk.observe)
        self.last_selftest: dict[str, Any] | None = None

    # -- reading ----------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        agent = self._agent
        tls = agent.config.mqtt.tls
        return {
            "device": agent.config.device.id,
            "village": agent.config.site.village_name,
            "identity": agent.identity(),
            "health": agent.health.snapshot(),
            "zones": [
                {"id": z.id, "name": z.name, **s.as_dict()}
                for z in agent.config.zones
                if (s := agent.arming.states().get(z.id)) is not None
            ],
            "open_alarms": agent.sink.open_alarms(),
            "certificate": certificate_expiry(tls.cert if tls else None),
        }

    def cameras(self) -> list[dict[str, Any]]:
        if self._agent.detection is None:
            return []
        zone_ids = [z.id for z in self._agent.config.zones]
        out = []
        for cam_id in self._agent.detection.camera_ids():
            view = self._agent.detection.view(cam_id)
            height, width = view.image.shape[:2] if view.image is not None else (0, 0)
            out.append(
                {
                    "id": cam_id,
                    "width": width,
                    "height": height,
                    "zones": [z.model_dump(mode="json") for z in view.cfg.zones],
                    "masks": view.cfg.masks,
                    "zone_ids": zone_ids,
                    "labels": self._agent.detection.detector.labels,
                }
            )
        return out

    def frame(self, cam_id: str, max_width: int) -> bytes | None:
        if self._agent.detection is None:
            return None
        try:
            view = self._agent.detection.view(cam_id)
        except KeyError:
            return None
        return annotate(view, max_width)

    # -- changing ---------------------------------------------------------------
    def save_zones(self, cam_id: str, zones: list[dict], masks: list, who: str) -> dict[str, Any]:
        agent = self._agent
        cameras = config_data(agent.config).get("cameras", [])
        ids = [c["id"] for c in cameras]
        if cam_id not in ids:
            raise ConsoleError("bad_args", f"no camera {cam_id!r}")
        updated = [
            {**c, "zones": zones, "masks": masks} if c["id"] == cam_id else c for c in cameras
        ]
        try:
            result = agent.config_editor.change({"cameras": updated}, by=f"console ({who})")
        except ConfigChangeError as exc:
            raise ConsoleError(exc.code, exc.message, exc.details) from None
        self.audit("zones_saved", {"camera": cam_id, "zones": [z.get("id") for z in zones]}, who)
        return result

    def arm(self, zones: list[str] | str, state: str, who: str) -> dict[str, Any]:
        agent = self._agent
        try:
            outcome = agent.arming.set(zones, state, by=f"console:{who}")
        except ArmingError as exc:
            raise ConsoleError(exc.code, str(exc)) from None
        agent.sink.arming_changed(outcome, by="console", command=None)
        self.audit(state, {"zones": zones}, who)
        return {"zones": outcome}

    def selftest(self) -> dict[str, Any]:
        self.last_selftest = run_selftest(self._agent)
        self.audit("selftest", {"ok": self.last_selftest["ok"]}, "console")
        return self.last_selftest

    def audit(self, action: str, data: dict[str, Any], who: str) -> None:
        """Every change made at the console is an event the county sees."""
        self._agent.recorder.emit(
            "status.console", SOURCE, data={"action": action, "by": who, **data}
        )
