"""Frames (BGR or single-channel IR) into model input tensors, and boxes back."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from shaobing.models.manifest import InputSpec

# Channel spread below which a 3-channel frame is really monochrome. IR-cut
# cameras at night send grey in BGR; a little chroma noise remains after JPEG.
_MONO_SPREAD = 4


def is_monochrome(frame: np.ndarray) -> bool:
    if frame.ndim == 2 or frame.shape[2] == 1:
        return True
    sample = frame[::16, ::16].astype(np.int16)
    spread = np.abs(sample[..., 0] - sample[..., 1]).max(initial=0)
    spread = max(spread, np.abs(sample[..., 1] - sample[..., 2]).max(initial=0))
    return bool(spread <= _MONO_SPREAD)


def grey(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2:
        return frame
    if frame.shape[2] == 1:
        return frame[..., 0]
    return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)


def shrink(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Downscale to ``size`` (w, h) cheaply with little aliasing.

    INTER_AREA at an arbitrary factor costs milliseconds on a 720p frame (it
    visits every source pixel with fractional weights); bilinear to twice the
    target, then an exact 2:1 area average, costs a tenth and keeps small
    distant people from aliasing away.
    """
    w, h = size
    mid = (min(frame.shape[1], 2 * w), min(frame.shape[0], 2 * h))
    if mid != (frame.shape[1], frame.shape[0]):
        frame = cv2.resize(frame, mid, interpolation=cv2.INTER_LINEAR)
    return cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)


@dataclass(frozen=True, slots=True)
class Fit:
    """Where the frame landed inside the model input, in model-relative units."""

    x0: float
    y0: float
    sx: float  # fraction of model width the frame occupies
    sy: float

    def to_frame(self, boxes: np.ndarray) -> np.ndarray:
        """(N, 4) x0,y0,x1,y1 model-relative -> frame-relative, clipped to [0, 1]."""
        out = np.empty_like(boxes, dtype=np.float32)
        out[:, 0::2] = (boxes[:, 0::2] - self.x0) / self.sx
        out[:, 1::2] = (boxes[:, 1::2] - self.y0) / self.sy
        return np.clip(out, 0.0, 1.0)


@dataclass(frozen=True, slots=True)
class Prepared:
    tensor: np.ndarray
    fit: Fit
    ir: bool


def fit_frame(frame: np.ndarray, spec: InputSpec) -> tuple[np.ndarray, Fit, bool]:
    """Resize to the model input; single-channel (IR) frames are replicated to 3 channels."""
    if frame.ndim == 3 and frame.shape[2] == 4:  # PNGs with alpha from image directories
        frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    ir = is_monochrome(frame)
    if ir:
        # Explicitly grey -> 3 equal channels: the detector was trained on colour,
        # and equal channels are what an IR scene looks like to it in RGB.
        frame = cv2.cvtColor(grey(frame), cv2.COLOR_GRAY2BGR)
    h, w = frame.shape[:2]
    mw, mh = spec.width, spec.height
    if spec.resize == "stretch":
        resized = shrink(frame, (mw, mh))
        fit = Fit(0.0, 0.0, 1.0, 1.0)
        if spec.color == "rgb":
            resized = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)
    else:
        scale = min(mw / w, mh / h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        px, py = (mw - nw) // 2, (mh - nh) // 2
        small = shrink(frame, (nw, nh))
        if spec.color == "rgb":  # before the black bars: fewer pixels to swap
            small = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
        resized = cv2.copyMakeBorder(
            small, py, mh - nh - py, px, mw - nw - px, cv2.BORDER_CONSTANT, value=(0, 0, 0)
        )
        fit = Fit(px / mw, py / mh, nw / mw, nh / mh)
    return resized, fit, ir


# Tensor dtypes cv2.LUT writes; any other goes through NumPy's take.
_CV_LUT_DTYPES = (np.int8, np.float32, np.float64)


def to_tensor(image: np.ndarray, spec: InputSpec, detail: dict) -> np.ndarray:
    """Normalise for the tensor's dtype; the tensor details win over the manifest's dtype.

    A uint8 pixel has 256 values, so the normalisation is computed once per value
    (the same float32 arithmetic, so the same numbers) and applied as a lookup
    table: one pass over the image instead of four.
    """
    dtype = detail["dtype"]
    if dtype == np.uint8:
        return image[None]
    x = (np.arange(256, dtype=np.uint8).astype(np.float32) - spec.mean) / spec.std
    if dtype == np.int8:
        scale, zero = detail["quantization"]
        table = np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8)
    else:
        table = x.astype(dtype)
    if image.dtype == np.uint8 and table.dtype in _CV_LUT_DTYPES:
        return cv2.LUT(image, table)[None]
    return np.take(table, image)[None]


def prepare(frame: np.ndarray, spec: InputSpec, detail: dict) -> Prepared:
    image, fit, ir = fit_frame(frame, spec)
    return Prepared(to_tensor(image, spec, detail), fit, ir)
