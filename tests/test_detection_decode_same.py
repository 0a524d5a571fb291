"""The cheap post-processing gives the detections the plain one gave (issue 13).

The adapters now threshold in logit space first and decode only the anchors
that can pass; NMS has a fast path for one box; the input tensor is normalised
through a lookup table. The reference below is the straightforward code they
replaced (score every anchor, then threshold, decode, NMS), run on the real
models' outputs for the shared images: boxes, scores and classes must be equal,
not close.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from detection_support import MEDIA, RUNTIME, V1, V2, default_model_path, need_shared
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from shaobing.agent.detection.adapters import AnchorSsdAdapter, SsdPostprocessAdapter
from shaobing.agent.detection.detector import Detector
from shaobing.agent.detection.nms import decode_boxes, decode_scores, score_candidates
from shaobing.agent.detection.preprocess import fit_frame, grey, is_monochrome, shrink, to_tensor
from shaobing.models.manifest import DecodeSpec
from shaobing.simulator.camera import Scene, SceneSpec

THRESHOLDS = [0.05, 0.3, 0.5, 0.8]


def reference_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a[:, None, :]
    b = b[None, :, :]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area_a = np.clip(a[..., 2] - a[..., 0], 0, None) * np.clip(a[..., 3] - a[..., 1], 0, None)
    area_b = np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def reference_nms(boxes, scores, iou_threshold, classes, max_out=100):
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(-scores, kind="stable")
    iou = reference_iou(boxes[order], boxes[order])
    cls = classes[order]
    iou = np.where(cls[:, None] == cls[None, :], iou, 0.0)
    alive = np.ones(len(order), dtype=bool)
    keep: list[int] = []
    while len(keep) < max_out:
        remaining = np.flatnonzero(alive)
        if len(remaining) == 0:
            break
        i = int(remaining[0])
        keep.append(i)
        alive &= iou[i] <= iou_threshold
        alive[i] = False
    return order[np.asarray(keep, dtype=np.int64)]


def reference_anchor(adapter: AnchorSsdAdapter, outputs, threshold):
    scores, classes = decode_scores(outputs[adapter.i_score][0], adapter.spec)
    keep = np.flatnonzero(scores >= threshold)
    boxes = decode_boxes(outputs[adapter.i_reg][0][keep], adapter.anchors[keep], adapter.spec)
    kept = reference_nms(boxes, scores[keep], adapter.iou_threshold, classes[keep])
    return boxes[kept], scores[keep][kept], classes[keep][kept]


def reference_postprocess(adapter: SsdPostprocessAdapter, outputs, threshold):
    count = int(outputs[adapter.i_count].ravel()[0])
    boxes = outputs[adapter.i_boxes].reshape(-1, 4)[:count]
    scores = outputs[adapter.i_scores].ravel()[:count]
    classes = outputs[adapter.i_classes].ravel()[:count].astype(np.int64)
    keep = scores >= threshold
    xy = boxes[keep][:, [1, 0, 3, 2]]
    scores, classes = scores[keep], classes[keep]
    kept = reference_nms(xy, scores, adapter.iou_threshold, classes)
    return xy[kept], scores[kept], classes[kept]


def reference_fit(frame, spec):
    if frame.ndim == 3 and frame.shape[2] == 4:
        frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    if is_monochrome(frame):
        frame = cv2.cvtColor(grey(frame), cv2.COLOR_GRAY2BGR)
    h, w = frame.shape[:2]
    mw, mh = spec.width, spec.height
    if spec.resize == "stretch":
        resized = shrink(frame, (mw, mh))
    else:
        scale = min(mw / w, mh / h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        px, py = (mw - nw) // 2, (mh - nh) // 2
        resized = np.zeros((mh, mw, 3), np.uint8)
        resized[py : py + nh, px : px + nw] = shrink(frame, (nw, nh))
    if spec.color == "rgb":
        resized = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)
    return resized


def reference_tensor(image, spec, detail):
    if detail["dtype"] == np.uint8:
        return image[None]
    x = (image.astype(np.float32) - spec.mean) / spec.std
    if detail["dtype"] == np.int8:
        scale, zero = detail["quantization"]
        return np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8)[None]
    return x[None].astype(detail["dtype"])


def frames() -> list[np.ndarray]:
    shared = [cv2.imread(str(p)) for p in sorted(MEDIA.iterdir()) if p.suffix != ".md"]
    ir = [cv2.cvtColor(shared[0], cv2.COLOR_BGR2GRAY)]
    # The benchmark's walk: one person at many places and sizes.
    scene = Scene(SceneSpec(width=1280, height=720, loop=True))
    return shared + ir + [scene.frame(i) for i in range(0, scene.length, 3)]


@pytest.fixture(scope="module", params=["default", "v1", "v2"])
def detector(request):
    need_shared()
    model = {"default": default_model_path(), "v1": V1, "v2": V2}[request.param]
    return Detector(model, runtime=RUNTIME, num_threads=2)


def test_detection_decode_same_as_scoring_every_anchor(detector):
    adapter = detector.adapter
    reference = reference_anchor if adapter.name == "anchor_ssd" else reference_postprocess
    found = 0
    for frame in frames():
        image, _, _ = fit_frame(frame, detector.input_spec)
        assert np.array_equal(image, reference_fit(frame, detector.input_spec))
        detail = detector.model.inputs[0]
        tensor = to_tensor(image, detector.input_spec, detail)
        expected_tensor = reference_tensor(image, detector.input_spec, detail)
        assert tensor.dtype == expected_tensor.dtype
        assert np.array_equal(tensor, expected_tensor)
        outputs, _ = detector._run(tensor)
        for threshold in THRESHOLDS:
            raw = adapter.decode(outputs, threshold)
            boxes, scores, classes = reference(adapter, outputs, threshold)
            assert np.array_equal(raw.boxes, boxes)
            assert np.array_equal(raw.scores, scores)
            assert np.array_equal(raw.classes, classes)
            found += len(raw.scores)
    assert found > 0  # the comparison saw detections, not only empty frames


@st.composite
def raw_scores(draw):
    """Logits crowding around the threshold's logit, where rounding could bite."""
    threshold = draw(st.floats(1e-5, 1 - 1e-5))
    classes = draw(st.integers(1, 4))
    centre = math.log(threshold / (1 - threshold))
    near = st.floats(-0.02, 0.02).map(lambda d: float(np.float32(centre + d)))
    anywhere = st.floats(-200, 200, width=32) | st.just(float("nan"))
    raw = draw(arrays(np.float32, (draw(st.integers(0, 60)), classes), elements=near | anywhere))
    background = draw(st.none() | st.integers(0, classes - 1))
    activation = draw(st.sampled_from(["sigmoid", "none"]))
    return raw, threshold, background, activation


@settings(max_examples=150, deadline=None)
@given(raw_scores())
def test_detection_score_candidates_never_drop_a_passing_anchor(case):
    raw, threshold, background, activation = case
    spec = DecodeSpec(
        num_coords=4,
        x_scale=1,
        y_scale=1,
        w_scale=1,
        h_scale=1,
        score_activation=activation,
        background_class=background,
    )
    candidates = score_candidates(raw, spec, threshold)
    assert np.all(np.diff(candidates) > 0)  # ascending, no repeats
    scores, _ = decode_scores(raw, spec)
    passing = np.flatnonzero(scores >= threshold)
    assert set(passing.tolist()) <= set(candidates.tolist())
