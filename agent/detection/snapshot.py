"""Alarm snapshots: the frame with the boxes drawn, as a JPEG under a byte cap.

Rural uplinks are a few hundred kbit/s shared with everything else, so the
cap wins over quality: quality drops first, then the picture shrinks.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from .types import Detection

_QUALITIES = (85, 75, 65, 55, 45, 35)
_MIN_WIDTH = 160


def draw_detections(
    frame: np.ndarray, detections: Sequence[Detection], captions: Sequence[str] | None = None
) -> np.ndarray:
    out = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR) if frame.ndim == 2 else frame.copy()
    thick = max(1, round(max(out.shape[:2]) / 320))
    for i, det in enumerate(detections):
        x0, y0, x1, y1 = det.box_px
        cv2.rectangle(out, (x0, y0), (x1, y1), (0, 0, 255), thick)
        text = captions[i] if captions else f"{det.label} {det.score:.2f}"
        cv2.putText(
            out,
            text,
            (x0 + 2, max(12, y0 - 4)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4 * thick,
            (0, 0, 255),
            thick,
            cv2.LINE_AA,
        )
    return out


def encode_capped(image: np.ndarray, max_bytes: int) -> bytes:
    """Smallest effort JPEG not larger than ``max_bytes`` (best effort at the floor)."""
    data = b""
    while True:
        for quality in _QUALITIES:
            ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if not ok:
                raise ValueError("JPEG encoding failed")
            data = buf.tobytes()
            if len(data) <= max_bytes:
                return data
        if image.shape[1] <= _MIN_WIDTH:
            return data
        image = cv2.resize(image, None, fx=0.7, fy=0.7, interpolation=cv2.INTER_AREA)


def snapshot(
    frame: np.ndarray,
    detections: Sequence[Detection],
    max_bytes: int,
    captions: Sequence[str] | None = None,
) -> bytes:
    return encode_capped(draw_detections(frame, detections, captions), max_bytes)
