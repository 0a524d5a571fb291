"""Box geometry, anchor generation, decoding and non-maximum suppression in numpy.

Everything works on whole arrays: per-anchor Python loops over ~2000 anchors
would cost more than the inference on a Pi.
"""

from __future__ import annotations

import math

import numpy as np

from shaobing.models.manifest import AnchorSpec, DecodeSpec


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (N,4) with every box in ``b`` (M,4), x0,y0,x1,y1."""
    # np.maximum rather than np.clip: the same values at a fraction of the call
    # overhead, which is what dominates for the few boxes a frame has.
    area_a = np.maximum(a[:, 2] - a[:, 0], 0) * np.maximum(a[:, 3] - a[:, 1], 0)
    area_b = np.maximum(b[:, 2] - b[:, 0], 0) * np.maximum(b[:, 3] - b[:, 1], 0)
    a = a[:, None, :]
    b = b[None, :, :]
    iw = np.maximum(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0)
    ih = np.maximum(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0)
    inter = iw * ih
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    iou_threshold: float,
    classes: np.ndarray | None = None,
    max_out: int = 100,
) -> np.ndarray:
    """Greedy NMS; returns kept indices, best first. Class-aware when ``classes`` given.

    The IoU matrix is computed once for the (already score-filtered) candidates,
    so the greedy pass only indexes rows; boxes of different classes never
    suppress each other.
    """
    if len(boxes) <= 1:  # the usual case at a guard post: nothing to suppress
        return np.zeros(len(boxes), dtype=np.int64)
    order = np.argsort(-scores, kind="stable")
    iou = iou_matrix(boxes[order], boxes[order])
    if classes is not None:
        cls = classes[order]
        iou = np.where(cls[:, None] == cls[None, :], iou, 0.0)
    alive = np.ones(len(order), dtype=bool)
    keep: list[int] = []
    # One iteration per kept box, each a vector operation over all candidates.
    while len(keep) < max_out:
        remaining = np.flatnonzero(alive)
        if len(remaining) == 0:
            break
        i = int(remaining[0])
        keep.append(i)
        alive &= iou[i] <= iou_threshold
        alive[i] = False
    return order[np.asarray(keep, dtype=np.int64)]


def _scale(spec: AnchorSpec, layer: int) -> float:
    if spec.num_layers == 1:
        return (spec.min_scale + spec.max_scale) / 2
    return spec.min_scale + (spec.max_scale - spec.min_scale) * layer / (spec.num_layers - 1)


def generate_anchors(spec: AnchorSpec, width: int, height: int) -> np.ndarray:
    """SSD anchors as (N, 4) x_centre, y_centre, w, h, in MediaPipe's order."""
    out = []
    layer = 0
    while layer < spec.num_layers:
        sizes: list[tuple[float, float]] = []
        last = layer
        # Consecutive layers with one stride share a feature map: their anchors
        # interleave per cell, which is the order the model's outputs use.
        while last < spec.num_layers and spec.strides[last] == spec.strides[layer]:
            scale = _scale(spec, last)
            for ratio in spec.aspect_ratios:
                sizes.append((scale * math.sqrt(ratio), scale / math.sqrt(ratio)))
            if spec.interpolated_scale_aspect_ratio > 0:
                nxt = 1.0 if last == spec.num_layers - 1 else _scale(spec, last + 1)
                inter = math.sqrt(scale * nxt)
                r = spec.interpolated_scale_aspect_ratio
                sizes.append((inter * math.sqrt(r), inter / math.sqrt(r)))
            last += 1
        stride = spec.strides[layer]
        fh, fw = math.ceil(height / stride), math.ceil(width / stride)
        ys, xs = np.meshgrid(
            (np.arange(fh) + spec.offset_y) / fh,
            (np.arange(fw) + spec.offset_x) / fw,
            indexing="ij",
        )
        centres = np.repeat(np.stack([xs.ravel(), ys.ravel()], axis=1), len(sizes), axis=0)
        wh = np.tile(np.asarray(sizes, dtype=np.float64), (fh * fw, 1))
        if spec.fixed_anchor_size:
            wh[:] = 1.0
        out.append(np.concatenate([centres, wh], axis=1))
        layer = last
    return np.concatenate(out).astype(np.float32)


def decode_boxes(raw: np.ndarray, anchors: np.ndarray, spec: DecodeSpec) -> np.ndarray:
    """Raw regressors (N, num_coords) -> boxes (N, 4) x0,y0,x1,y1 in model-relative units."""
    ax, ay, aw, ah = anchors.T
    if spec.box_from_keypoints is not None:
        c, e = spec.box_from_keypoints
        kx = raw[:, spec.keypoint_offset :: 2][:, : spec.num_keypoints] / spec.x_scale
        ky = raw[:, spec.keypoint_offset + 1 :: 2][:, : spec.num_keypoints] / spec.y_scale
        kx = kx * aw[:, None] + ax[:, None]
        ky = ky * ah[:, None] + ay[:, None]
        radius = np.hypot(kx[:, e] - kx[:, c], ky[:, e] - ky[:, c])
        return np.stack(
            [kx[:, c] - radius, ky[:, c] - radius, kx[:, c] + radius, ky[:, c] + radius], axis=1
        )
    if spec.coord_order == "xywh":
        tx, ty, tw, th = raw[:, 0], raw[:, 1], raw[:, 2], raw[:, 3]
    else:
        ty, tx, th, tw = raw[:, 0], raw[:, 1], raw[:, 2], raw[:, 3]
    xc = tx / spec.x_scale * aw + ax
    yc = ty / spec.y_scale * ah + ay
    if spec.exp_box_size:
        w = np.exp(tw / spec.w_scale) * aw
        h = np.exp(th / spec.h_scale) * ah
    else:
        w = tw / spec.w_scale * aw
        h = th / spec.h_scale * ah
    return np.stack([xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2], axis=1)


# Logit-space prefilter margin: far wider than float32 rounding of the threshold and
# of the sigmoid, so an anchor the exact score would keep is never filtered out.
_LOGIT_MARGIN = 0.01
_SIGMOID_PREFILTER = (1e-4, 1 - 1e-4)  # thresholds outside: every anchor is scored


def score_candidates(raw: np.ndarray, spec: DecodeSpec, threshold: float) -> np.ndarray:
    """Indices (ascending) of the anchors whose best raw score may reach ``threshold``.

    A superset of what ``decode_scores(raw) >= threshold`` keeps, found with one
    comparison per anchor on the raw logits (the activation is monotonic), so the
    sigmoid, the box decoding and NMS run on a handful of anchors instead of all
    2,000+ while giving the same detections.
    """
    if spec.score_activation == "sigmoid":
        low, high = _SIGMOID_PREFILTER
        if not low <= threshold <= high:
            return np.arange(len(raw))
        floor = math.log(threshold / (1 - threshold)) - _LOGIT_MARGIN
    else:
        floor = threshold - _LOGIT_MARGIN * max(1.0, abs(threshold))
    if floor <= -spec.score_clip:  # clipping could lift a lower raw score above it
        return np.arange(len(raw))
    if raw.shape[1] == 1:
        best = raw[:, 0]
    else:
        classes = [c for c in range(raw.shape[1]) if c != spec.background_class]
        best = raw[:, classes].max(axis=1)
    return np.flatnonzero(best >= floor)


def decode_scores(raw: np.ndarray, spec: DecodeSpec) -> tuple[np.ndarray, np.ndarray]:
    """Raw class scores (N, C) -> (best score, best class) per anchor."""
    logits = np.clip(raw, -spec.score_clip, spec.score_clip)
    # tanh form of the sigmoid: exp() of a clipped logit overflows float32.
    probs = 0.5 * (1.0 + np.tanh(0.5 * logits)) if spec.score_activation == "sigmoid" else logits
    if spec.background_class is not None and probs.shape[1] > 1:
        probs = probs.copy()
        probs[:, spec.background_class] = -np.inf
    cls = probs.argmax(axis=1)
    return probs[np.arange(len(probs)), cls], cls
