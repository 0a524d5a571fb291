"""Shared helpers of the detection and camera tests (real models, real images)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from threading import Condition
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
MEDIA = SHARED / "media"
V1 = SHARED / "models" / "coco-ssd-mobilenet-v1-quant" / "detect.tflite"
V2 = SHARED / "models" / "ssd-mobilenet-v2-fpnlite-320-float" / "model.tflite"


def need_shared() -> None:
    if not (MEDIA.is_dir() and V1.is_file() and V2.is_file()):
        pytest.skip(f"shared models/media not found at {SHARED} (../shared beside the repo)")


def default_model_path() -> Path:
    from shaobing.models.fetch import FetchError, fetch

    try:
        return fetch()
    except FetchError as exc:
        pytest.skip(f"default model cannot be fetched here (offline registry?): {exc}")


@dataclass
class Emitted:
    type: str
    source: Any
    zone: str | None
    data: dict[str, Any]
    severity: Any
    attachment: bytes | None


@dataclass
class ListSink:
    """Collects what drivers emit; tests wait on it with a deadline."""

    events: list[Emitted] = field(default_factory=list)
    cond: Condition = field(default_factory=Condition)

    def emit(
        self,
        type: str,
        source: Any,
        *,
        zone: str | None = None,
        data: Mapping[str, Any] | None = None,
        severity: Any = None,
        attachment: bytes | None = None,
    ) -> Emitted:
        ev = Emitted(type, source, zone, dict(data or {}), severity, attachment)
        with self.cond:
            self.events.append(ev)
            self.cond.notify_all()
        return ev

    def wait_for(self, predicate, timeout: float = 20.0) -> list[Emitted]:
        with self.cond:
            ok = self.cond.wait_for(lambda: predicate(self.events), timeout=timeout)
            assert ok, f"condition not met in {timeout}s; events: {self.events}"
            return list(self.events)

    def of_type(self, prefix: str) -> list[Emitted]:
        with self.cond:
            return [e for e in self.events if e.type.startswith(prefix)]
