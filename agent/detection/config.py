"""Configuration of cameras and the detector (plugged into the root config by the agent)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from shaobing.core.model import Strict
from shaobing.models.manifest import DEFAULT_MODEL

Point = tuple[float, float]


def _check_polygon(points: list[Point]) -> list[Point]:
    if len(points) < 3:
        raise ValueError("a polygon needs at least 3 points")
    for x, y in points:
        if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            raise ValueError(f"point {(x, y)} is outside the frame: use relative coordinates 0..1")
    return points


class LabelFilter(Strict):
    min_score: float = Field(default=0.5, ge=0, le=1, description="minimum detection score")
    min_area: float = Field(
        default=0.0, ge=0, le=1, description="minimum box area as a fraction of the frame"
    )
    max_area: float = Field(
        default=1.0, ge=0, le=1, description="maximum box area as a fraction of the frame"
    )


class CameraZone(Strict):
    id: str = Field(description="zone id; also the 'zone' of the events raised in it")
    name: str | None = Field(default=None, description="human name, e.g. 'K123 bridge'")
    polygon: list[Point] = Field(
        description="corners in relative frame coordinates (0..1, x right, y down); an object "
        "is in the zone when the bottom centre of its box (where it stands) is inside"
    )
    labels: list[str] | None = Field(
        default=None, description="labels that raise alarms here; None means every label"
    )

    @field_validator("polygon")
    @classmethod
    def _polygon(cls, points: list[Point]) -> list[Point]:
        return _check_polygon(points)


class MotionConfig(Strict):
    enabled: bool = Field(default=True, description="skip inference on frames without motion")
    width: int = Field(default=160, ge=16, description="width the frame is shrunk to for the test")
    pixel_delta: int = Field(
        default=18, ge=1, le=255, description="grey-level change that counts as a changed pixel"
    )
    min_fraction: float = Field(
        default=0.002, ge=0, le=1, description="fraction of changed pixels that means motion"
    )


# Old frame-counted tracker keys, mapped at this inference rate (the default
# detection rate, detect.fps): behaviour must not depend on a camera's fps.
_LEGACY_FPS = 5.0


class TrackerConfig(Strict):
    iou_match: float = Field(default=0.2, gt=0, le=1, description="IoU to continue a track")
    confirm_s: float = Field(
        default=0.3,
        ge=0,
        description="seconds a track must be seen (at least twice) before it may raise an "
        "alarm (noise guard)",
    )
    lost_after_s: float = Field(
        default=2.0,
        gt=0,
        description="seconds a track may go unseen (a post or a passing train hides it, a "
        "missed detection) before it ends",
    )
    exit_after_s: float = Field(
        default=0.5,
        ge=0,
        description="seconds a track must stand outside every zone before its alarm ends",
    )
    duplicate_overlap: float = Field(
        default=0.6,
        gt=0,
        le=1,
        description="a new box of the same label covering this fraction of a tracked box "
        "(or covered by it) is a duplicate, not a second object",
    )
    stationary_after_s: float = Field(
        default=10.0,
        gt=0,
        description="an object whose box has not moved for this long is stationary",
    )
    stationary_move: float = Field(
        default=0.1,
        gt=0,
        le=1,
        description="movement, as a fraction of the box size, that counts as moving",
    )
    stationary_interval_s: float = Field(
        default=5.0,
        gt=0,
        description="how often a stationary object that can alarm is re-checked without motion",
    )
    update_interval_s: float | None = Field(
        default=60.0, description="'update' event for an alarm still active this long; None: never"
    )

    @model_validator(mode="before")
    @classmethod
    def _legacy_frame_keys(cls, data: Any) -> Any:
        """min_hits / max_missed / exit_inferences counted inferences: map them to seconds."""
        if not isinstance(data, dict):
            return data
        legacy = {
            "min_hits": "confirm_s",
            "max_missed": "lost_after_s",
            "exit_inferences": "exit_after_s",
        }
        found = [k for k in legacy if k in data]
        if not found:
            return data
        data = dict(data)
        for key in found:
            value, new = data.pop(key), legacy[key]
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(
                    f"tracker.{key} must be a whole number of inferences, got {value!r}"
                )
            if key == "min_hits":
                seconds = max(0, value - 1) / _LEGACY_FPS
            elif key == "max_missed":
                seconds = (value + 1) / _LEGACY_FPS
            else:
                seconds = value / _LEGACY_FPS
            data.setdefault(new, seconds)
            warnings.warn(
                f"tracker.{key} (inferences) is deprecated: use tracker.{new} (seconds); "
                f"{key}: {value} is read as {new}: {seconds:g}",
                FutureWarning,
                stacklevel=2,
            )
        return data


class DetectStream(Strict):
    fps: float | None = Field(
        default=5.0,
        gt=0,
        description="frames a second converted and offered to detection; the others of an "
        "RTSP/V4L2/file stream are only grabbed (decoded, not converted), the latest wins; "
        "None: every frame. Image directories and the simulator deliver at their own fps",
    )


class SnapshotStream(Strict):
    source: str | None = Field(
        default=None,
        description="stream for alarm and snapshot-command JPEGs, usually the main stream "
        "(Channels/101) while 'source' is the sub-stream; None: snapshots from 'source'",
    )
    keep_warm: bool = Field(
        default=False,
        description="keep the snapshot stream open (frames decoded, converted only when a "
        "snapshot is taken); false: opened on motion or a snapshot command, closed after "
        "linger_s",
    )
    linger_s: float = Field(
        default=60.0, gt=0, description="an on-demand snapshot stream closes after this idle"
    )
    wait_s: float = Field(
        default=1.0,
        gt=0,
        description="longest wait for a snapshot-stream frame when an alarm starts; past it "
        "the alarm's JPEG comes from the detect stream",
    )


class CameraConfig(Strict):
    id: str = Field(description="camera id, the source id of its events")
    source: str = Field(
        description="the detect stream (usually the sub-stream): V4L2 index ('0') or device "
        "('/dev/video0'), rtsp/http URL, video file, image directory, or 'sim:SCENE?opts' for "
        "the simulator"
    )
    enabled: bool = Field(default=True, description="a disabled camera is not opened")
    fps: float = Field(default=5.0, gt=0, description="frame rate of image directories")
    loop: bool = Field(default=True, description="replay video files and image directories")
    open_timeout_s: float = Field(default=5.0, gt=0, description="network stream open/read limit")
    stall_timeout_s: float = Field(
        default=10.0, gt=0, description="no frame for this long raises fault.camera"
    )
    backoff_min_s: float = Field(default=1.0, gt=0, description="first reopen delay")
    backoff_max_s: float = Field(default=60.0, gt=0, description="longest reopen delay")
    zones: list[CameraZone] = Field(
        default_factory=list, description="guarded zones; no zone means nothing raises alarms"
    )
    masks: list[list[Point]] = Field(
        default_factory=list,
        description="polygons ignored for motion and detection (trees, a public road)",
    )
    filters: dict[str, LabelFilter] = Field(
        default_factory=dict,
        description="per-label score and size filters; other labels use the detector threshold",
    )
    motion: MotionConfig = Field(default_factory=MotionConfig, description="motion gate")
    snapshot_max_bytes: int = Field(
        default=60_000, ge=5_000, description="JPEG snapshot size cap for the rural uplink"
    )
    detect: DetectStream = Field(
        default_factory=DetectStream, description="the detect stream ('source'): its rate"
    )
    snapshot: SnapshotStream = Field(
        default_factory=SnapshotStream, description="optional second stream for snapshots"
    )

    @field_validator("masks")
    @classmethod
    def _masks(cls, masks: list[list[Point]]) -> list[list[Point]]:
        return [_check_polygon(m) for m in masks]


class DetectorConfig(Strict):
    model: str = Field(
        default=DEFAULT_MODEL, description="manifest name (in the model cache) or .tflite path"
    )
    labels: Path | None = Field(default=None, description="labels file overriding the manifest")
    runtime: Literal["auto", "ai-edge-litert", "tflite-runtime"] = Field(
        default="auto", description="TFLite runtime; auto prefers ai-edge-litert"
    )
    num_threads: Annotated[int, Field(ge=1, le=8)] | Literal["auto"] = Field(
        default="auto",
        description="interpreter threads; auto: one less than the CPU cores this process may "
        "use (1-4), leaving a core for decoding the cameras and preparing the next frames",
    )
    adapter: Literal["auto", "ssd_postprocess", "anchor_ssd"] = Field(
        default="auto", description="output decoder; auto: manifest, else the output tensors"
    )
    score_threshold: float = Field(default=0.5, ge=0, le=1, description="minimum score")
    iou_threshold: float = Field(default=0.45, gt=0, le=1, description="NMS overlap limit")
    model_dir: Path | None = Field(
        default=None, description="model cache; default $SHAOBING_MODEL_DIR or models/cache"
    )
    tracker: TrackerConfig = Field(default_factory=TrackerConfig, description="object tracker")
    stats_interval_s: float = Field(
        default=300.0, gt=0, description="period of the status.detection statistics event"
    )


# What a running pipeline takes over without reopening a camera (the console's zone editor).
LIVE_CAMERA_FIELDS = ("zones", "masks", "filters")


def cameras_change_live(old: list[CameraConfig], new: list[CameraConfig]) -> bool:
    """The same cameras, differing at most in zones, masks and filters."""
    if [c.id for c in old] != [c.id for c in new]:
        return False
    blank = dict.fromkeys(LIVE_CAMERA_FIELDS)
    return all(
        a.model_copy(update=blank) == b.model_copy(update=blank)
        for a, b in zip(old, new, strict=True)
    )
