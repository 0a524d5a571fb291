"""Class-aware de-duplication (NMS) applies to every adapter, not only the anchor decoder."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from detection_support import MEDIA, V1, V2, need_shared

from shaobing.agent.detection.detector import Detector
from shaobing.agent.detection.nms import iou_matrix


def _postprocess_outputs(adapter, yx_boxes, scores, classes) -> list[np.ndarray]:
    """Output tensors as TFLite_Detection_PostProcess lays them out for this model."""
    n = 10
    outs: dict[int, np.ndarray] = {
        adapter.i_boxes: np.zeros((1, n, 4), np.float32),
        adapter.i_scores: np.zeros((1, n), np.float32),
        adapter.i_classes: np.zeros((1, n), np.float32),
        adapter.i_count: np.array([len(scores)], np.float32),
    }
    outs[adapter.i_boxes][0, : len(scores)] = yx_boxes
    outs[adapter.i_scores][0, : len(scores)] = scores
    outs[adapter.i_classes][0, : len(scores)] = classes
    return [outs[i] for i in range(4)]


@pytest.fixture(scope="module")
def v1():
    need_shared()
    return Detector(V1, score_threshold=0.3, iou_threshold=0.45)


def test_detection_postprocess_adapter_dedupes_same_class_keeps_other_class(v1):
    # ymin, xmin, ymax, xmax as the op emits them; IoU of the two = 0.6.
    yx = np.array([[0.1, 0.1, 0.9, 0.5], [0.1, 0.2, 0.9, 0.6]], np.float32)
    same = v1.adapter.decode(_postprocess_outputs(v1.adapter, yx, [0.9, 0.8], [0, 0]), 0.3)
    assert len(same.scores) == 1 and np.isclose(same.scores[0], 0.9)
    assert np.allclose(same.boxes[0], [0.1, 0.1, 0.5, 0.9])
    other = v1.adapter.decode(_postprocess_outputs(v1.adapter, yx, [0.9, 0.8], [0, 1]), 0.3)
    assert sorted(other.classes.tolist()) == [0, 1]


@pytest.mark.parametrize("model", [V1, V2], ids=["v1-quant", "v2-fpnlite"])
# At a low score limit these frames carry same-class boxes overlapping at IoU 0.5-0.6
# out of both models' built-in post-processing (measured before the fix).
@pytest.mark.parametrize("image", ["owl.jpg", "traffic_0001.bmp", "traffic_0003.bmp"])
def test_detection_real_model_output_has_no_overlapping_same_class_boxes(model, image):
    need_shared()
    det = Detector(model, score_threshold=0.15, iou_threshold=0.45)
    dets = det.detect(cv2.imread(str(MEDIA / image))).detections
    assert dets
    boxes = np.array([[d.box.x0, d.box.y0, d.box.x1, d.box.y1] for d in dets])
    iou = iou_matrix(boxes, boxes)
    for i in range(len(dets)):
        for j in range(i + 1, len(dets)):
            if dets[i].class_id == dets[j].class_id:
                assert iou[i, j] <= 0.45, (image, dets[i], dets[j], iou[i, j])
