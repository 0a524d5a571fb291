"""Motion gate: is this frame worth an inference?

A frame is sampled down to ~160 px wide *before* the grey conversion (so the
conversion touches 1/64 of the pixels), blurred, and compared with the last
frame that was tested. Idle cameras then cost a few small-image operations.
"""

from __future__ import annotations

import cv2
import numpy as np

from .config import MotionConfig


class MotionGate:
    def __init__(self, cfg: MotionConfig, mask: np.ndarray | None = None) -> None:
        self.cfg = cfg
        self._mask = mask  # 255 where motion counts, relative size applied lazily
        self._scaled_mask: np.ndarray | None = None
        self._prev: np.ndarray | None = None
        self.last_fraction = 0.0

    def _small(self, frame: np.ndarray) -> np.ndarray:
        h, w = frame.shape[:2]
        sw = min(self.cfg.width, w)
        sh = max(1, round(h * sw / w))
        # Nearest sampling touches only the output pixels: the cheap part of
        # "idle frames must cost little"; the blur below averages its noise.
        small = cv2.resize(frame, (sw, sh), interpolation=cv2.INTER_NEAREST)
        if small.ndim == 3 and small.shape[2] == 3:
            small = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        elif small.ndim == 3:
            small = small[..., 0]
        # Sensor noise and JPEG blocking are single-pixel: blur them away.
        return cv2.GaussianBlur(small, (5, 5), 0)

    def check(self, frame: np.ndarray) -> bool:
        if not self.cfg.enabled:
            return True
        small = self._small(frame)
        prev, self._prev = self._prev, small
        if prev is None or prev.shape != small.shape:
            self.last_fraction = 1.0
            return True
        changed = cv2.absdiff(small, prev) > self.cfg.pixel_delta
        if self._mask is not None:
            if self._scaled_mask is None or self._scaled_mask.shape != small.shape:
                self._scaled_mask = (
                    cv2.resize(self._mask, small.shape[::-1], interpolation=cv2.INTER_NEAREST) > 0
                )
            changed &= self._scaled_mask
        self.last_fraction = float(np.count_nonzero(changed)) / changed.size
        return self.last_fraction >= self.cfg.min_fraction
