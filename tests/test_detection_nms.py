from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from shaobing.agent.detection.nms import decode_boxes, generate_anchors, iou_matrix, nms
from shaobing.models.manifest import AnchorSpec, DecodeSpec, get_manifest


def test_detection_iou_basics():
    a = np.array([[0, 0, 1, 1], [0, 0, 0.5, 1]], np.float32)
    m = iou_matrix(a, a)
    assert np.allclose(np.diag(m), 1) and np.isclose(m[0, 1], 0.5)
    assert iou_matrix(a, np.array([[2, 2, 3, 3]], np.float32)).max() == 0


def test_detection_nms_keeps_best_and_separates_classes():
    boxes = np.array([[0, 0, 1, 1], [0.05, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3]], np.float32)
    scores = np.array([0.6, 0.9, 0.8, 0.5], np.float32)
    assert list(nms(boxes, scores, 0.5)) == [1, 3]
    classes = np.array([0, 0, 1, 0])
    assert list(nms(boxes, scores, 0.5, classes)) == [1, 2, 3]


@st.composite
def box_sets(draw):
    n = draw(st.integers(0, 40))
    xy = draw(arrays(np.float32, (n, 2), elements=st.floats(0, 0.875, width=32)))
    wh = draw(arrays(np.float32, (n, 2), elements=st.floats(0.015625, 0.5, width=32)))
    scores = draw(arrays(np.float32, (n,), elements=st.floats(0, 1, width=32), unique=True))
    classes = draw(arrays(np.int64, (n,), elements=st.integers(0, 2)))
    return np.concatenate([xy, xy + wh], axis=1), scores, classes


@settings(max_examples=150, deadline=None)
@given(box_sets(), st.floats(0.1, 0.9))
def test_detection_nms_properties(data, threshold):
    boxes, scores, classes = data
    keep = nms(boxes, scores, threshold, classes)
    assert len(set(keep.tolist())) == len(keep)
    # Best first.
    assert np.all(np.diff(scores[keep]) <= 0)
    iou = iou_matrix(boxes, boxes)
    same = classes[:, None] == classes[None, :]
    kept = np.zeros(len(boxes), bool)
    kept[keep] = True
    # No two kept boxes of one class overlap above the threshold ...
    k = keep
    pair = iou[np.ix_(k, k)] * same[np.ix_(k, k)]
    np.fill_diagonal(pair, 0)
    assert (pair <= threshold + 1e-6).all()
    # ... and every dropped box is covered by a better kept box of its class.
    for i in np.flatnonzero(~kept):
        cover = kept & same[i] & (iou[i] > threshold) & (scores >= scores[i])
        assert cover.any()
    # NMS of its own output changes nothing.
    again = nms(boxes[keep], scores[keep], threshold, classes[keep])
    assert len(again) == len(keep)


def test_detection_blazepose_anchor_count_and_order():
    m = get_manifest("blazepose-person")
    anchors = generate_anchors(m.anchors, m.input.width, m.input.height)
    assert anchors.shape == (2254, 4)
    # Stride-8 layer first: 28x28 cells, 2 anchors each, row-major from the top-left.
    assert np.allclose(anchors[0, :2], [0.5 / 28, 0.5 / 28])
    assert np.allclose(anchors[2, :2], [1.5 / 28, 0.5 / 28])
    assert np.allclose(anchors[1568, :2], [0.5 / 14, 0.5 / 14])


def test_detection_anchor_sizes_follow_scales():
    spec = AnchorSpec(num_layers=2, min_scale=0.2, max_scale=0.6, strides=[16, 32])
    anchors = generate_anchors(spec, 64, 64)
    assert anchors.shape == (4 * 4 * 2 + 2 * 2 * 2, 4)
    assert np.allclose(anchors[0, 2:], [0.2, 0.2])
    assert np.allclose(anchors[1, 2:], [np.sqrt(0.2 * 0.6)] * 2)


@given(
    arrays(np.float32, (5, 2), elements=st.floats(0.125, 0.875, width=32)),
    arrays(np.float32, (5, 2), elements=st.floats(0.0625, 0.5, width=32)),
)
def test_detection_decode_inverts_encoding(centres, sizes):
    anchors = np.concatenate(
        [np.full((5, 2), 0.5, np.float32), np.full((5, 2), 0.3, np.float32)], 1
    )
    spec = DecodeSpec(
        num_coords=4,
        coord_order="yxhw",
        x_scale=10,
        y_scale=10,
        w_scale=5,
        h_scale=5,
        exp_box_size=True,
    )
    ty = (centres[:, 1] - 0.5) / 0.3 * 10
    tx = (centres[:, 0] - 0.5) / 0.3 * 10
    th = np.log(sizes[:, 1] / 0.3) * 5
    tw = np.log(sizes[:, 0] / 0.3) * 5
    boxes = decode_boxes(np.stack([ty, tx, th, tw], 1), anchors, spec)
    assert np.allclose((boxes[:, 0] + boxes[:, 2]) / 2, centres[:, 0], atol=1e-4)
    assert np.allclose(boxes[:, 3] - boxes[:, 1], sizes[:, 1], atol=1e-4)
