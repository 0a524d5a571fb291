"""Settings bundles in service: watch -> confirmed, or rollback (docs/mqtt.md#settings-bundles).

The settings side of ``ModelUpdates.watch_turn`` (agent/model_updates.py):
once a second, while a settings bundle is on probation (agent/config_watch.py)
and the agent runs its settings, the faults the change can explain
(agent/settings_faults.py) are compared with those open before it. A new one
rolls the change back through ``ConfigEditor.rollback`` (the path
``set_config {"rollback": true}`` takes) and reports ``status.update``
``{"target": "config", "phase": "rolled_back", "verdict": "fault", "version",
"reason"}``; a change that needed a restart is undone by a restart on the old
file (the agent exits with EXIT_RESTART; systemd starts it again). A window
that passes without one reports ``confirmed`` and ends the watch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from shaobing.agent.conditions import OpenCondition
from shaobing.agent.config import Config
from shaobing.agent.config_commands import ConfigChangeError, ConfigEditor
from shaobing.agent.config_watch import ConfigWatch
from shaobing.agent.settings_faults import all_faults, new_faults, open_faults, scope_of
from shaobing.agent.update_watch import emit_update
from shaobing.core.events import EventSink
from shaobing.core.worker import LoopWorker

log = logging.getLogger("shaobing.updates")

WATCH_PERIOD_S = 1.0


class SettingsProbation:
    def __init__(
        self,
        watch: ConfigWatch,
        editor: ConfigEditor,
        sink: EventSink,
        open_conditions: Callable[[], Iterable[OpenCondition]],
        failing_workers: Callable[[], list[str]],
        detector_fault: Callable[[], str | None],
        request_restart: Callable[[], None],
        now: Callable[[], float] = time.time,
    ):
        self.watch = watch
        self._editor = editor
        self._sink = sink
        self._open_conditions = open_conditions
        self._failing = failing_workers
        self._detector_fault = detector_fault
        self._restart = request_restart
        self._now = now
        self._lock = threading.Lock()  # a bundle taken while a turn judges the last one
        self._done = False  # rolled back into a restart: nothing more to judge in this run
        # A watch can only begin at start or by begin(): no need to read the file each
        # second for the months between bundles (a USB install waits for the restart).
        self._watching = False
        self.worker = LoopWorker("config-watch", self.turn, WATCH_PERIOD_S)

    # ---- start-up --------------------------------------------------------------
    def at_start(self) -> None:
        """Before the drivers start: report a crash-loop rollback ``shaobing run`` made,
        and take the baseline of a change that waited for this restart."""
        report = self.watch.take_report()
        if report is not None:
            self._report("rolled_back", **report)
        watch = self.watch.current()
        self._watching = watch is not None
        if watch is not None and watch.get("baseline") is None and watch.get("until") is not None:
            # Faults still open from the run on the old settings are not the change's.
            # (Workers are not started yet: none counts as failing before the change.)
            self.watch.update(baseline=all_faults(self._open_conditions(), [], None))

    def start(self) -> None:
        self.worker.start()

    def stop(self) -> None:
        self.worker.stop()

    def alive(self) -> bool:
        return self.worker.alive()

    # ---- a bundle taken ---------------------------------------------------------
    def snapshot(self) -> list[str]:
        """The faults open now: taken just before a change, its baseline."""
        return all_faults(self._open_conditions(), self._failing(), self._detector_fault())

    def begin(self, version: int, old: Config, result: dict[str, Any], before: list[str]) -> None:
        """Put the change from ``old`` to the editor's config on probation, for the
        ``updates`` settings that config has (a bundle may change them too); ``before``
        is ``snapshot()`` from just before the change."""
        new = self._editor.effective
        scope, updates = scope_of(old, new), new.updates
        # A change that waits for a restart gets its baseline at that start.
        restart = bool(result["restart_required"])
        with self._lock:
            self.watch.begin(
                version,
                updates.watch_s,
                updates.max_starts,
                scope=scope,
                restart=restart,
                baseline=None if restart else before,
            )
            self._watching = True

    # ---- the watch ---------------------------------------------------------------
    def turn(self) -> None:
        with self._lock:
            if self._done or not self._watching:
                return
            watch = self.watch.current()
            if watch is None:
                self._watching = False
                return
            if watch.get("until") is None:
                return  # a change still waiting for its restart
            if watch.get("baseline") is None:
                return  # taken by at_start; a watch begun after it has its own
            if self._now() >= watch["until"]:
                # Told before ended: a crash in between tells it twice, never not at all.
                self._report("confirmed", target="config", version=watch["version"])
                self.watch.end()
                return
            faults = new_faults(
                open_faults(
                    watch.get("scope", {}),
                    self._open_conditions(),
                    self._failing(),
                    self._detector_fault(),
                ),
                watch["baseline"],
            )
            if faults:
                self._roll_back(watch, "; ".join(faults))

    def _roll_back(self, watch: dict[str, Any], reason: str) -> None:
        version = watch["version"]
        try:
            result = self._editor.rollback(f"the watch of settings bundle v{version}")
        except ConfigChangeError as exc:
            log.error(
                "cannot roll a settings bundle back",
                extra={"fields": {"version": version, "reason": reason, "error": str(exc)}},
            )
            self.watch.end()
            return
        # Ended before told: a crash in between must not judge the old settings by
        # the bundle's scope (a second rollback would put the bundle back).
        self.watch.end()
        self.watch.versions.rolled_back()
        restart = bool(result["restart_required"])
        message = f"settings bundle v{version} undone: {reason}" + (
            "; restarting on the settings before it" if restart else ""
        )
        self._report(
            "rolled_back",
            target="config",
            verdict="fault",
            version=version,
            reason=reason,
            message=message,
        )
        if restart:
            self._done = True
            self._restart()

    def _report(self, phase: str, **data: Any) -> None:
        body = {"phase": phase, "update_id": None, **data}
        log.info("settings update", extra={"fields": body})
        emit_update(self._sink, body)
