"""Object tracker: one identity per object across inferences of one camera.

Everything is measured in seconds, never in frames, so a track behaves the same
at 5 and at 25 inferences per second. Association survives what real cameras
do to a walking person: a missed detection or a post hiding him for a moment
(the track coasts on its velocity for ``lost_after_s``), a second overlapping
box for the same person (a duplicate, not a new object), and a box that jumps
when half of the person is hidden (a centre-distance fallback after IoU).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from .config import TrackerConfig
from .nms import iou_matrix
from .types import Box, Detection

# Velocity is smoothed: half the new estimate, half the old one.
_VELOCITY_GAIN = 0.5
# Fallback association: centre within this many box sizes of the prediction,
# and a box between half and twice the size of the track's.
_CENTRE_GATE = 1.0
_SIZE_RATIO = 2.0


def _centre(box: Box) -> tuple[float, float]:
    return ((box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2)


def _overlap_coefficient(a: Box, b: Box) -> float:
    """Intersection over the smaller box: 1.0 when one box holds the other."""
    iw = min(a.x1, b.x1) - max(a.x0, b.x0)
    ih = min(a.y1, b.y1) - max(a.y0, b.y0)
    if iw <= 0 or ih <= 0:
        return 0.0
    smaller = min(a.area, b.area)
    return iw * ih / smaller if smaller > 0 else 0.0


@dataclass
class Track:
    id: int
    det: Detection
    first_mono: float
    last_mono: float  # last time a detection was matched
    hits: int = 1
    missed: int = 0  # consecutive inferences without a match
    best_score: float = 0.0
    velocity: tuple[float, float] = (0.0, 0.0)  # box centre, frame-relative units per second
    # Stationary: the box has stayed near ``anchor`` since ``anchor_mono``.
    anchor: Box | None = None
    anchor_mono: float = 0.0
    stationary: bool = False
    # Alarm lifecycle, driven by the pipeline.
    alarm_zone: str | None = None
    alarm_since: float = 0.0
    last_event_mono: float = 0.0
    outside_since: float | None = None
    extra: dict = field(default_factory=dict)

    def predicted(self, now: float, horizon: float) -> Box:
        """Where the box should be now, coasting on the velocity for at most ``horizon`` s."""
        dt = min(max(0.0, now - self.last_mono), horizon)
        dx, dy = self.velocity[0] * dt, self.velocity[1] * dt
        b = self.det.box
        return Box(b.x0 + dx, b.y0 + dy, b.x1 + dx, b.y1 + dy)

    def confirmed(self, now: float, confirm_s: float) -> bool:
        return self.hits >= 2 and now - self.first_mono >= confirm_s


class IouTracker:
    def __init__(self, cfg: TrackerConfig) -> None:
        self.cfg = cfg
        self.tracks: list[Track] = []
        self._ids = itertools.count(1)

    def update(self, dets: list[Detection], now: float) -> tuple[list[Track], list[Track]]:
        """Match detections to tracks; returns (tracks seen this time, tracks that ended)."""
        cfg = self.cfg
        tracks = self.tracks
        predicted = [t.predicted(now, cfg.lost_after_s) for t in tracks]
        pairs = self._associate(tracks, predicted, dets)
        matched_dets = {di for _, di in pairs}
        seen: list[Track] = []
        for ti, di in pairs:
            self._follow(tracks[ti], dets[di], now)
            seen.append(tracks[ti])
        # What is left either duplicates an object already accounted for (a second
        # box on the same person) or is a new object; best score first.
        kept = [dets[di].box for di in matched_dets]
        kept_labels = [dets[di].label for di in matched_dets]
        for t, p in zip(tracks, predicted, strict=True):
            if t not in seen:
                kept.append(p)
                kept_labels.append(t.det.label)
        leftovers = sorted(
            (di for di in range(len(dets)) if di not in matched_dets),
            key=lambda di: -dets[di].score,
        )
        for di in leftovers:
            d = dets[di]
            if any(
                label == d.label and _overlap_coefficient(box, d.box) >= cfg.duplicate_overlap
                for box, label in zip(kept, kept_labels, strict=True)
            ):
                continue
            t = Track(next(self._ids), d, now, now, best_score=d.score, anchor=d.box)
            t.anchor_mono = now
            tracks.append(t)
            seen.append(t)
            kept.append(d.box)
            kept_labels.append(d.label)
        ended = []
        seen_ids = {id(t) for t in seen}
        for t in tracks:
            if id(t) in seen_ids:
                continue
            t.missed += 1
            # Two misses at least, so that a pause in inference (no motion, a
            # stationary object re-checked rarely) is not mistaken for absence.
            if t.missed >= 2 and now - t.last_mono >= cfg.lost_after_s:
                ended.append(t)
        if ended:
            gone = {id(t) for t in ended}
            self.tracks = [t for t in tracks if id(t) not in gone]
        return seen, ended

    def _associate(
        self, tracks: list[Track], predicted: list[Box], dets: list[Detection]
    ) -> list[tuple[int, int]]:
        """Greedy: best IoU with the predicted box first, then nearest centres."""
        if not tracks or not dets:
            return []
        a = np.array([[p.x0, p.y0, p.x1, p.y1] for p in predicted], np.float32)
        b = np.array([[d.box.x0, d.box.y0, d.box.x1, d.box.y1] for d in dets], np.float32)
        same = np.array([[t.det.label == d.label for d in dets] for t in tracks])
        iou = np.where(same, iou_matrix(a, b), 0.0)
        free_t, free_d = set(range(len(tracks))), set(range(len(dets)))
        pairs: list[tuple[int, int]] = []
        # A guard-post camera sees a few objects: greedy is enough, and no scipy on the Pi.
        for flat in np.argsort(-iou, axis=None):
            ti, di = divmod(int(flat), len(dets))
            if iou[ti, di] < self.cfg.iou_match:
                break
            if ti in free_t and di in free_d:
                free_t.discard(ti)
                free_d.discard(di)
                pairs.append((ti, di))
        if not free_t or not free_d:
            return pairs
        # A box that jumped (half the person hidden behind a post, a fast walker
        # at a low rate): near the prediction and of a similar size.
        candidates = []
        for ti in free_t:
            p = predicted[ti]
            pw, ph = p.x1 - p.x0, p.y1 - p.y0
            size = max(pw, ph, 1e-6)
            pc = _centre(p)
            for di in free_d:
                if not same[ti, di]:
                    continue
                box = dets[di].box
                dc = _centre(box)
                dist = float(np.hypot(dc[0] - pc[0], dc[1] - pc[1])) / size
                ratio = max(box.y1 - box.y0, 1e-6) / max(ph, 1e-6)
                if dist <= _CENTRE_GATE and 1 / _SIZE_RATIO <= ratio <= _SIZE_RATIO:
                    candidates.append((dist, ti, di))
        for _, ti, di in sorted(candidates):
            if ti in free_t and di in free_d:
                free_t.discard(ti)
                free_d.discard(di)
                pairs.append((ti, di))
        return pairs

    def _follow(self, t: Track, d: Detection, now: float) -> None:
        cfg = self.cfg
        dt = now - t.last_mono
        if dt > 0:
            (ox, oy), (nx, ny) = _centre(t.det.box), _centre(d.box)
            vx, vy = (nx - ox) / dt, (ny - oy) / dt
            g = _VELOCITY_GAIN if t.hits > 1 else 1.0
            t.velocity = (
                t.velocity[0] + g * (vx - t.velocity[0]),
                t.velocity[1] + g * (vy - t.velocity[1]),
            )
        t.det, t.last_mono, t.hits, t.missed = d, now, t.hits + 1, 0
        t.best_score = max(t.best_score, d.score)
        anchor = t.anchor or d.box
        (ax, ay), (cx, cy) = _centre(anchor), _centre(d.box)
        size = max(anchor.x1 - anchor.x0, anchor.y1 - anchor.y0, 1e-6)
        if np.hypot(cx - ax, cy - ay) > cfg.stationary_move * size:
            t.anchor, t.anchor_mono, t.stationary = d.box, now, False
        elif now - t.anchor_mono >= cfg.stationary_after_s:
            t.stationary = True
        if t.stationary:
            t.velocity = (0.0, 0.0)

    def drain(self) -> list[Track]:
        """End every track (shutdown)."""
        out, self.tracks = self.tracks, []
        return out
