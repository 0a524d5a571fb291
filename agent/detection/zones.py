"""Zones, masks and label filters of one camera, in relative coordinates."""

from __future__ import annotations

import cv2
import numpy as np

from .config import CameraConfig, CameraZone, LabelFilter
from .types import Detection

_MASK_RES = 256


def _contour(points) -> np.ndarray:
    return np.asarray(points, dtype=np.float32).reshape(-1, 1, 2)


class CameraZones:
    def __init__(self, cfg: CameraConfig, default_min_score: float) -> None:
        self.zones = list(cfg.zones)
        self._zone_contours = [_contour(z.polygon) for z in self.zones]
        self._mask_contours = [_contour(m) for m in cfg.masks]
        self.filters = dict(cfg.filters)
        self.default = LabelFilter(min_score=default_min_score)

    def passes(self, det: Detection) -> bool:
        f = self.filters.get(det.label, self.default)
        return det.score >= f.min_score and f.min_area <= det.box.area <= f.max_area

    def masked(self, point: tuple[float, float]) -> bool:
        return any(cv2.pointPolygonTest(c, point, False) >= 0 for c in self._mask_contours)

    def can_alarm(self, label: str) -> bool:
        """Does some zone of this camera raise alarms for ``label``?"""
        return any(z.labels is None or label in z.labels for z in self.zones)

    def zone_of(self, det: Detection) -> CameraZone | None:
        """First zone whose polygon holds the object's bottom centre (where it stands)."""
        point = det.box.bottom_centre
        if self.masked(point):
            return None
        for zone, contour in zip(self.zones, self._zone_contours, strict=True):
            if zone.labels is not None and det.label not in zone.labels:
                continue
            if cv2.pointPolygonTest(contour, point, False) >= 0:
                return zone
        return None

    def motion_mask(self) -> np.ndarray | None:
        """255 where motion counts; None when there is no mask."""
        if not self._mask_contours:
            return None
        mask = np.full((_MASK_RES, _MASK_RES), 255, np.uint8)
        for c in self._mask_contours:
            cv2.fillPoly(mask, [np.round(c * (_MASK_RES - 1)).astype(np.int32)], 0)
        return mask
