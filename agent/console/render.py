"""The live view's picture: the newest frame, scaled down, with zones, masks and tracks drawn.

Runs on a web worker thread when a page asks for a frame, never on the camera or
inference threads: the pipeline only keeps its newest frame, the console copies
it here (``CameraView.image`` is shared and must not be drawn on).
"""

from __future__ import annotations

import cv2
import numpy as np

from shaobing.agent.detection.pipeline import CameraView

ZONE = (60, 200, 60)  # BGR
MASK = (120, 120, 120)
TRACK = (0, 200, 255)
ALARM = (40, 40, 230)


def _points(polygon, width: int, height: int) -> np.ndarray:
    return np.array([(round(x * width), round(y * height)) for x, y in polygon], np.int32)


def annotate(view: CameraView, max_width: int, quality: int = 75) -> bytes | None:
    if view.image is None:
        return None
    image = view.image
    height, width = image.shape[:2]
    if width > max_width:
        height = round(height * max_width / width)
        width = max_width
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    else:
        image = image.copy()
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    overlay = image.copy()
    for mask in view.cfg.masks:
        cv2.fillPoly(overlay, [_points(mask, width, height)], MASK)
    image = cv2.addWeighted(overlay, 0.45, image, 0.55, 0)
    for zone in view.cfg.zones:
        pts = _points(zone.polygon, width, height)
        cv2.polylines(image, [pts], True, ZONE, 2, cv2.LINE_AA)
        x, y = pts.min(axis=0)
        cv2.putText(image, zone.id, (int(x) + 4, int(y) + 16), 0, 0.5, ZONE, 1, cv2.LINE_AA)
    for t in view.tracks:
        x0, y0, x1, y1 = t.box.pixels(width, height)
        colour = ALARM if t.alarm_zone else TRACK
        cv2.rectangle(image, (x0, y0), (x1, y1), colour, 2)
        text = f"{t.label} {t.score:.2f} #{t.id}"
        cv2.putText(image, text, (x0, max(12, y0 - 4)), 0, 0.45, colour, 1, cv2.LINE_AA)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return buf.tobytes() if ok else None
