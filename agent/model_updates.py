"""Model updates: check -> switch -> watch -> rollback, for remote and USB bundles alike.

``install`` takes a bundle file (assembled from MQTT chunks by
agent/bundle_receiver.py, or given to ``shaobing models install``): verify
its signature and sha256 (models/bundle.py), load it in a second interpreter
and try it (agent/detection/model_check.py) while the running detector keeps
serving the cameras, then switch: the slot becomes active on disk
(agent/detection/model_store.py) and the pipeline swaps detectors between two
inferences. A refused bundle changes nothing.

For ``updates.watch_s`` after a switch the new model is on probation: inference
steps failing in a row (``max_faults``), ``slow_inferences`` in a row over
``budget_ms``, a model that no longer loads, or ``max_starts`` agent starts
within the window (a crash loop, counted durably) roll it back to the previous
model, which is reported as ``status.update`` phase ``rolled_back``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shaobing.agent.detection.config import DetectorConfig
from shaobing.agent.detection.detector import Detector
from shaobing.agent.detection.model_check import CheckFailed, check_candidate
from shaobing.agent.detection.model_store import ModelStore, Slot
from shaobing.agent.detection.runtime import ModelError
from shaobing.agent.update_watch import crash_loop, emit_update
from shaobing.agent.updates_config import UpdatesConfig
from shaobing.core.events import EventSink
from shaobing.core.signing import KeyFileError, Keyring
from shaobing.core.worker import LoopWorker
from shaobing.models.bundle import BundleError, open_bundle

if TYPE_CHECKING:
    from shaobing.agent.config import Config
    from shaobing.agent.detection.pipeline import DetectionPipeline

log = logging.getLogger("shaobing.updates")

WATCH_PERIOD_S = 1.0


class UpdateRefused(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def load_detector(slot: Slot | None, cfg: DetectorConfig) -> Detector:
    """The detector of an installed slot, or of ``detector.model`` when there is none."""
    if slot is None:
        return Detector.from_config(cfg)
    return Detector(
        slot.path,
        manifest=slot.manifest,
        runtime=cfg.runtime,
        num_threads=cfg.num_threads,
        score_threshold=cfg.score_threshold,
        iou_threshold=cfg.iou_threshold,
    )


class ModelUpdates:
    def __init__(
        self,
        cfg: UpdatesConfig,
        det_cfg: DetectorConfig,
        store: ModelStore,
        keys: list[Path],
        sink: EventSink | None,
        now: Callable[[], float] = time.time,
    ):
        self.cfg = cfg
        self.det_cfg = det_cfg
        self.store = store
        self.keys = keys  # read at each install: a rotated county key needs no restart
        self._sink = sink
        self._now = now
        self.pipeline: DetectionPipeline | None = None
        self.watch: dict[str, Any] | None = None
        self._rolled_back: tuple[str, str, str | None] | None = None
        self.running: Slot | None = None  # the slot the pipeline serves (None: detector.model)
        self._serving = False  # set once a detector was handed out
        self._lock = threading.RLock()  # one switch or rollback at a time
        self._started = False
        self._held: list[dict[str, Any]] = []  # reports from before start()
        self.worker = LoopWorker("model-watch", self.watch_turn, WATCH_PERIOD_S)

    @classmethod
    def from_config(cls, config: Config, sink: EventSink | None) -> ModelUpdates:
        """Bundles are trusted when signed by a county key of ``control.command_keys``."""
        return cls(
            config.updates,
            config.detector,
            ModelStore(config.storage.path.parent / "models"),
            list(config.control.command_keys),
            sink,
        )

    # ---- reporting -------------------------------------------------------------
    def report(self, phase: str, update_id: str | None = None, **data: Any) -> None:
        body = {"phase": phase, "update_id": update_id, **data}
        log.info("model update", extra={"fields": body})
        if self._sink is None:
            return  # `shaobing models install`: the log is the report
        if not self._started:
            self._held.append(body)
            return
        emit_update(self._sink, body)

    def start(self) -> None:
        self._started = True
        for body in self._held:
            self.report(**body)
        self._held.clear()
        self.worker.start()

    def stop(self) -> None:
        self.worker.stop()

    def alive(self) -> bool:
        return self.worker.alive()

    def trusted_kids(self) -> list[str]:
        try:
            return Keyring.load(self.keys).kids
        except KeyFileError:
            return []

    def versions(self) -> dict[str, Any]:
        """What runs now, for ``status.health`` and the registration message."""
        # The slot in service, not the one on disk: `shaobing models install` switches
        # the files while a running agent keeps its model until it restarts.
        slot = self.running if self._serving else self.store.active()
        if slot is not None:
            return {**slot.describe(), "watching": self.watch is not None}
        return {"name": self.det_cfg.model, "sha256": None, "bundle_version": None, "slot": None}

    # ---- start-up --------------------------------------------------------------
    def startup_detector(self) -> Detector:
        """The detector to start with; counts this start against a watch."""
        watch = self.store.count_start(self._now())
        if watch and crash_loop(watch, self.cfg.max_starts):
            self._rollback_on_disk(
                "crash_loop", f"{watch['starts'] - 1} agent starts within the watch window"
            )
        while True:
            slot = self.store.active()
            try:
                detector = load_detector(slot, self.det_cfg)
            except ModelError as exc:
                if slot is None:
                    raise
                self._rollback_on_disk("detector_fault", str(exc))
                continue
            self.watch = self.store.state()["watch"] if slot else None
            self.running, self._serving = slot, True
            self._report_rollback()
            return detector

    def _rollback_on_disk(self, reason: str, message: str) -> Slot | None:
        failed, _ = self.store.rollback()
        self.watch = None
        self._rolled_back = (reason, message, failed)
        return self.store.active()

    def _report_rollback(self) -> None:
        if self._rolled_back is not None:
            reason, message, failed = self._rolled_back
            self._rolled_back = None
            model = self.versions()
            self.report(
                "rolled_back", verdict=reason, message=message, failed_slot=failed, model=model
            )

    # ---- install ---------------------------------------------------------------
    def install(self, bundle_path: Path, update_id: str | None = None) -> dict[str, Any]:
        """Verify, check and switch to the model in ``bundle_path``; raises ``UpdateRefused``."""
        size = bundle_path.stat().st_size if bundle_path.exists() else 0
        self.report("verifying", update_id, bytes=size)
        staging = self.store.staging_model()
        try:
            try:
                keyring = Keyring.load(self.keys)
            except KeyFileError as exc:
                raise BundleError("unknown_key", f"county keys unreadable: {exc}") from None
            bundle = open_bundle(bundle_path, keyring, staging)
            self.report("checking", update_id, bytes=size, name=bundle.manifest.name)
            frames = self.pipeline.latest_frames() if self.pipeline else []
            candidate, check = check_candidate(
                staging, bundle.manifest, self.det_cfg, self.cfg.budget_ms, frames
            )
        except (BundleError, CheckFailed) as exc:
            staging.unlink(missing_ok=True)
            self.report("refused", update_id, bytes=size, verdict=exc.code, message=str(exc))
            raise UpdateRefused(exc.code, str(exc)) from None
        with self._lock:
            slot = self.store.add(bundle, staging)
            self.store.activate(slot, self.cfg.watch_s, self._now())
            self.watch = self.store.state()["watch"]
            if self.pipeline is not None:
                self.pipeline.swap_detector(candidate)
                self.running = slot
        result = {"model": slot.describe(), "check": check.as_dict(), "watch_s": self.cfg.watch_s}
        self.report("active", update_id, bytes=size, verdict="ok", **result)
        return result

    # ---- watch -----------------------------------------------------------------
    def watch_turn(self) -> None:
        with self._lock:
            watch, pipeline = self.watch, self.pipeline
            if watch is None:
                return
            verdict = None
            if pipeline is not None:
                recent = list(pipeline.recent_ms)[-self.cfg.slow_inferences :]
                if pipeline.faults >= self.cfg.max_faults:
                    verdict = (
                        "detector_fault",
                        f"{pipeline.faults} inference steps failed in a row",
                    )
                elif len(recent) == self.cfg.slow_inferences and min(recent) > self.cfg.budget_ms:
                    verdict = (
                        "over_budget",
                        f"{len(recent)} inferences in a row over {self.cfg.budget_ms:g} ms "
                        f"(fastest {min(recent):.1f} ms)",
                    )
            if verdict is not None:
                self.rollback(*verdict)
            elif self._now() >= watch["until"]:
                self.store.confirm()
                self.watch = None
                self.report("confirmed", model=self.versions())

    def rollback(self, reason: str, message: str) -> None:
        """Back to the previous model now, in service."""
        with self._lock:
            back = self._rollback_on_disk(reason, message)
            if self.pipeline is None:
                self._report_rollback()
                return
            try:
                detector = load_detector(back, self.det_cfg)
            except ModelError as exc:
                log.error("previous model does not load", extra={"fields": {"error": str(exc)}})
                back = self._rollback_on_disk("detector_fault", str(exc))
                detector = load_detector(back, self.det_cfg)
            self.pipeline.swap_detector(detector)
            self.running = back
            self._report_rollback()

    def reconfigure(self, cfg: UpdatesConfig) -> None:
        """Budgets and limits apply from the next watch turn (``updates`` is a live section)."""
        self.cfg = cfg
