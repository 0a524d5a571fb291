"""IoU tracker: one identity per object across inferences of one camera."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from .config import TrackerConfig
from .nms import iou_matrix
from .types import Detection


@dataclass
class Track:
    id: int
    det: Detection
    first_mono: float
    last_mono: float
    hits: int = 1
    missed: int = 0
    best_score: float = 0.0
    # Alarm lifecycle, driven by the pipeline.
    alarm_zone: str | None = None
    alarm_since: float = 0.0
    last_event_mono: float = 0.0
    outside: int = 0
    extra: dict = field(default_factory=dict)


class IouTracker:
    def __init__(self, cfg: TrackerConfig) -> None:
        self.cfg = cfg
        self.tracks: list[Track] = []
        self._ids = itertools.count(1)

    def update(self, dets: list[Detection], now: float) -> tuple[list[Track], list[Track]]:
        """Match detections to tracks; returns (tracks seen this time, tracks that ended)."""
        seen: list[Track] = []
        unmatched_dets = set(range(len(dets)))
        unmatched_tracks = set(range(len(self.tracks)))
        if dets and self.tracks:
            a = np.array([t.det.box.as_list() for t in self.tracks], np.float32)
            b = np.array([d.box.as_list() for d in dets], np.float32)
            iou = iou_matrix(a, b)
            same = np.array([[t.det.label == d.label for d in dets] for t in self.tracks])
            iou = np.where(same, iou, 0.0)
            # Greedy on the best overlaps first: good enough for the few objects
            # a guard-post camera sees, and no scipy on the Pi.
            for flat in np.argsort(-iou, axis=None):
                ti, di = divmod(int(flat), len(dets))
                if iou[ti, di] < self.cfg.iou_match:
                    break
                if ti in unmatched_tracks and di in unmatched_dets:
                    unmatched_tracks.discard(ti)
                    unmatched_dets.discard(di)
                    t = self.tracks[ti]
                    t.det, t.last_mono, t.hits, t.missed = dets[di], now, t.hits + 1, 0
                    t.best_score = max(t.best_score, dets[di].score)
                    seen.append(t)
        for di in sorted(unmatched_dets):
            t = Track(next(self._ids), dets[di], now, now, best_score=dets[di].score)
            self.tracks.append(t)
            seen.append(t)
        ended = []
        for ti in unmatched_tracks:
            t = self.tracks[ti]
            t.missed += 1
            if t.missed > self.cfg.max_missed:
                ended.append(t)
        if ended:
            gone = {id(t) for t in ended}
            self.tracks = [t for t in self.tracks if id(t) not in gone]
        return seen, ended

    def drain(self) -> list[Track]:
        """End every track (shutdown)."""
        out, self.tracks = self.tracks, []
        return out
