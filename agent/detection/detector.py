"""One loaded model with its adapter: frame in, detections out."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from shaobing.models.fetch import default_model_dir, verify
from shaobing.models.manifest import (
    InputSpec,
    ManifestError,
    ModelManifest,
    get_manifest,
    manifest_for_file,
)

from .adapters import Adapter, AnchorSsdAdapter, SsdPostprocessAdapter, detect_layout
from .preprocess import Prepared, prepare
from .runtime import LoadedModel, ModelError, RuntimeName, load_model
from .types import Box, Detection


@dataclass(frozen=True, slots=True)
class DetectResult:
    detections: list[Detection]
    ir: bool
    invoke_s: float
    frame_size: tuple[int, int] = field(default=(0, 0))


def resolve_model(spec: str, model_dir: Path | None = None) -> tuple[Path, ModelManifest | None]:
    """A manifest name (looked up in the model cache) or a path to a .tflite file."""
    path = Path(spec)
    if path.suffix == ".tflite" or path.exists() or "/" in spec:
        if not path.is_file():
            raise ModelError(f"model file {path} does not exist (expected a .tflite file)")
        return path, manifest_for_file(path)
    try:
        manifest = get_manifest(spec)
    except ManifestError as exc:
        raise ModelError(str(exc)) from None
    path = (model_dir or default_model_dir()) / manifest.file
    if not path.is_file():
        raise ModelError(
            f"model file {path} for {spec!r} is missing; run 'shaobing models fetch {spec}'"
        )
    try:
        verify(path, manifest.sha256)
    except ValueError as exc:
        raise ModelError(str(exc)) from None
    return path, manifest


def read_labels(path: Path) -> list[str]:
    try:
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except OSError as exc:
        raise ModelError(f"labels file {path} cannot be read: {exc}") from exc


def model_labels(path: Path, manifest: ModelManifest | None, labels: Path | None) -> list[str]:
    """The label map: a configured file, the manifest's list, or labels.txt beside the model.

    Needs no interpreter, so `config check` can check the labels a config names."""
    if labels is not None:
        return read_labels(labels)
    if manifest and manifest.labels:
        return list(manifest.labels)
    name = manifest.labels_file if manifest else "labels.txt"
    beside = path.parent / (name or "labels.txt")
    return read_labels(beside) if beside.is_file() else []


def _input_spec_from_tensor(model: LoadedModel) -> InputSpec:
    detail = model.inputs[0]
    shape = [int(d) for d in detail["shape"]]
    if len(shape) != 4 or shape[3] != 3:
        raise ModelError(
            f"model file {model.path} has input shape {shape}; expected [1,H,W,3] image"
        )
    floating = detail["dtype"] == np.float32
    return InputSpec(
        width=shape[2],
        height=shape[1],
        dtype="float32" if floating else "uint8",
        # The TF object-detection exports without a manifest expect [-1, 1].
        mean=127.5 if floating else 0.0,
        std=127.5 if floating else 1.0,
    )


if TYPE_CHECKING:
    from shaobing.agent.detection.config import DetectorConfig


class Detector:
    """Thread-safe: several cameras share one interpreter, serialised by a lock."""

    @classmethod
    def from_config(cls, cfg: DetectorConfig, model_dir: Path | None = None) -> Detector:
        """The detector a ``detector:`` config section describes."""
        return cls(
            cfg.model,
            labels=cfg.labels,
            runtime=cfg.runtime,
            num_threads=cfg.num_threads,
            score_threshold=cfg.score_threshold,
            iou_threshold=cfg.iou_threshold,
            adapter=cfg.adapter,
            model_dir=cfg.model_dir or model_dir,
        )

    def __init__(
        self,
        model: str | Path,
        *,
        labels: Path | None = None,
        runtime: RuntimeName = "auto",
        num_threads: int | Literal["auto"] = "auto",
        score_threshold: float = 0.5,
        iou_threshold: float = 0.45,
        adapter: str = "auto",
        model_dir: Path | None = None,
        manifest: ModelManifest | None = None,
    ) -> None:
        # A signed bundle brings its own manifest (agent/model_updates.py).
        path, manifest = (
            (Path(model), manifest) if manifest else resolve_model(str(model), model_dir)
        )
        self.manifest = manifest
        self.model = load_model(path, runtime, num_threads)
        self.score_threshold = score_threshold
        self._lock = threading.Lock()
        self.input_spec = manifest.input if manifest else _input_spec_from_tensor(self.model)
        layout = adapter if adapter != "auto" else (manifest.adapter if manifest else None)
        layout = layout or detect_layout(self.model)
        self.adapter = self._make_adapter(layout, iou_threshold)
        self.labels = self._labels(path, labels)

    def _make_adapter(self, layout: str, iou_threshold: float) -> Adapter:
        if layout == "ssd_postprocess":
            if detect_layout(self.model) != "ssd_postprocess":
                raise ModelError(f"model file {self.model.path} is not a post-processed SSD")
            return SsdPostprocessAdapter(self.model, self._probe, iou_threshold)
        if layout == "anchor_ssd":
            m = self.manifest
            if m is None or m.anchors is None or m.decode is None:
                raise ModelError(
                    f"model file {self.model.path} has raw SSD outputs; decoding them needs a "
                    "manifest with anchor geometry (models/*.yaml), and none matches its sha256"
                )
            return AnchorSsdAdapter(self.model, m.input, m.anchors, m.decode, iou_threshold)
        raise ModelError(f"unknown adapter {layout!r} (expected ssd_postprocess or anchor_ssd)")

    def _labels(self, path: Path, labels: Path | None) -> list[str]:
        return model_labels(path, self.manifest, labels)

    def label(self, class_id: int) -> str:
        if 0 <= class_id < len(self.labels):
            return self.labels[class_id]
        return f"class_{class_id}"

    def _probe(self, rng: np.random.Generator) -> list[np.ndarray]:
        shape = (self.input_spec.height, self.input_spec.width, 3)
        frame = rng.integers(0, 256, size=shape, dtype=np.uint8)
        return self._run(prepare(frame, self.input_spec, self.model.inputs[0]).tensor)[0]

    def _run(self, tensor: np.ndarray) -> tuple[list[np.ndarray], float]:
        interp = self.model.interpreter
        with self._lock:
            interp.set_tensor(self.model.inputs[0]["index"], tensor)
            start = time.perf_counter()
            interp.invoke()
            took = time.perf_counter() - start
            return [interp.get_tensor(o["index"]) for o in self.model.outputs], took

    def invoke_raw(self) -> float:
        """One bare invoke on the current input tensor (benchmarks)."""
        with self._lock:
            start = time.perf_counter()
            self.model.interpreter.invoke()
            return time.perf_counter() - start

    def prepare(self, frame: np.ndarray) -> Prepared:
        """Resize and normalise a frame for the model: thread-safe, needs no interpreter.

        The pipeline runs this for the next frame on another thread while
        ``invoke()`` works on the current one (see docs/inference.md).
        """
        return prepare(frame, self.input_spec, self.model.inputs[0])

    def detect(
        self,
        frame: np.ndarray,
        score_threshold: float | None = None,
        prepared: Prepared | None = None,
    ) -> DetectResult:
        threshold = self.score_threshold if score_threshold is None else score_threshold
        prepared = prepared or self.prepare(frame)
        outputs, took = self._run(prepared.tensor)
        raw = self.adapter.decode(outputs, threshold)
        h, w = frame.shape[:2]
        boxes = prepared.fit.to_frame(raw.boxes) if len(raw.boxes) else raw.boxes
        dets = [
            Detection(self.label(int(c)), int(c), float(s), Box(*map(float, b)), (w, h))
            for b, s, c in zip(boxes, raw.scores, raw.classes, strict=True)
        ]
        return DetectResult(dets, prepared.ir, took, (w, h))
