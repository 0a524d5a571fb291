"""Model adapters: raw output tensors -> (boxes, scores, classes) in model-relative units.

Output tensors are mapped by shape and value range, never by position: the
two COCO SSDs we ship for order their four post-processed outputs differently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from shaobing.models.manifest import AnchorSpec, DecodeSpec, InputSpec

from .nms import decode_boxes, decode_scores, generate_anchors, nms, score_candidates
from .runtime import LoadedModel, ModelError


@dataclass(frozen=True, slots=True)
class RawDetections:
    boxes: np.ndarray  # (N, 4) x0, y0, x1, y1 model-relative
    scores: np.ndarray  # (N,)
    classes: np.ndarray  # (N,) int


class Adapter(Protocol):
    name: str

    def decode(self, outputs: list[np.ndarray], score_threshold: float) -> RawDetections: ...


def _squeeze(shape) -> tuple[int, ...]:
    return tuple(int(d) for d in shape)


def detect_layout(model: LoadedModel) -> str:
    """Which adapter fits the model's outputs; a clear error if none does."""
    shapes = [_squeeze(o["shape"]) for o in model.outputs]
    if len(shapes) == 4:
        boxes = [s for s in shapes if len(s) == 3 and s[-1] == 4]
        counts = [s for s in shapes if int(np.prod(s)) == 1]
        pairs = [s for s in shapes if len(s) == 2]
        if len(boxes) == 1 and len(counts) == 1 and len(pairs) == 2:
            return "ssd_postprocess"
    if len(shapes) == 2 and all(len(s) == 3 for s in shapes) and shapes[0][1] == shapes[1][1]:
        return "anchor_ssd"
    raise ModelError(
        f"model file {model.path} has outputs {shapes}; expected either the 4 outputs of "
        "TFLite_Detection_PostProcess (boxes [1,N,4], classes [1,N], scores [1,N], count [1]) "
        "or 2 raw SSD outputs (regressors [1,N,K>=4], scores [1,N,C])"
    )


def _integral(a: np.ndarray) -> bool:
    return bool(np.all(a == np.round(a)))


def _score_like(a: np.ndarray) -> bool:
    return bool(np.all((a >= 0) & (a <= 1)) and not _integral(a))


class SsdPostprocessAdapter:
    """Models ending in TFLite_Detection_PostProcess (boxes ymin,xmin,ymax,xmax).

    The built-in op's own NMS uses the export's overlap limit (often 0.6), not
    ours, so one person can still arrive as two boxes; our class-aware NMS runs
    on its output as well, making ``iou_threshold`` mean the same for every model.
    """

    name = "ssd_postprocess"

    def __init__(self, model: LoadedModel, probe, iou_threshold: float = 0.45) -> None:
        self.iou_threshold = iou_threshold
        shapes = [_squeeze(o["shape"]) for o in model.outputs]
        self.i_boxes = next(i for i, s in enumerate(shapes) if len(s) == 3 and s[-1] == 4)
        self.i_count = next(i for i, s in enumerate(shapes) if int(np.prod(s)) == 1)
        pair = [i for i, s in enumerate(shapes) if len(s) == 2]
        self.i_scores, self.i_classes = self._tell_apart(model, pair, probe)

    @staticmethod
    def _tell_apart(model: LoadedModel, pair: list[int], probe) -> tuple[int, int]:
        """Scores lie in [0, 1] and are fractional, class ids are whole numbers.

        A few probe inferences on noise decide it once at load; a blank input
        can give all-zero scores, which look like class ids, hence several.
        """
        rng = np.random.default_rng(7)
        for _ in range(6):
            outs = probe(rng)
            a, b = outs[pair[0]].ravel(), outs[pair[1]].ravel()
            if _score_like(a) and _integral(b):
                return pair[0], pair[1]
            if _score_like(b) and _integral(a):
                return pair[1], pair[0]
        raise ModelError(
            f"model file {model.path}: cannot tell the scores output from the classes output "
            "(expected one [1,N] tensor of fractional scores in [0,1] and one of class ids)"
        )

    def decode(self, outputs: list[np.ndarray], score_threshold: float) -> RawDetections:
        count = int(outputs[self.i_count].ravel()[0])
        boxes = outputs[self.i_boxes].reshape(-1, 4)[:count]
        scores = outputs[self.i_scores].ravel()[:count]
        classes = outputs[self.i_classes].ravel()[:count].astype(np.int64)
        keep = scores >= score_threshold
        xy = boxes[keep][:, [1, 0, 3, 2]]
        scores, classes = scores[keep], classes[keep]
        kept = nms(xy, scores, self.iou_threshold, classes)
        return RawDetections(xy[kept], scores[kept], classes[kept])


class AnchorSsdAdapter:
    """Raw SSD heads: anchors, box decoding and NMS done here, vectorised."""

    name = "anchor_ssd"

    def __init__(
        self,
        model: LoadedModel,
        inputs: InputSpec,
        anchors: AnchorSpec,
        decode: DecodeSpec,
        iou_threshold: float,
    ) -> None:
        self.spec = decode
        self.iou_threshold = iou_threshold
        self.anchors = generate_anchors(anchors, inputs.width, inputs.height)
        shapes = [_squeeze(o["shape"]) for o in model.outputs]
        regs = [i for i, s in enumerate(shapes) if s[-1] == decode.num_coords]
        if len(shapes) != 2 or len(regs) != 1:
            raise ModelError(
                f"model file {model.path} has outputs {shapes}; expected one regressor "
                f"tensor [1,N,{decode.num_coords}] and one score tensor [1,N,C]"
            )
        self.i_reg, self.i_score = regs[0], 1 - regs[0]
        n = shapes[self.i_reg][1]
        if n != len(self.anchors):
            raise ModelError(
                f"model file {model.path} predicts {n} boxes but the manifest's anchor "
                f"geometry gives {len(self.anchors)}: wrong manifest for this model"
            )

    def decode(self, outputs: list[np.ndarray], score_threshold: float) -> RawDetections:
        raw_scores = outputs[self.i_score][0]
        # Threshold first: only the few anchors that can pass are scored and decoded.
        candidates = score_candidates(raw_scores, self.spec, score_threshold)
        scores, classes = decode_scores(raw_scores[candidates], self.spec)
        above = scores >= score_threshold
        keep, scores, classes = candidates[above], scores[above], classes[above]
        if len(keep) == 0:
            empty = np.zeros((0, 4), np.float32)
            return RawDetections(empty, np.zeros(0, np.float32), np.zeros(0, np.int64))
        boxes = decode_boxes(outputs[self.i_reg][0][keep], self.anchors[keep], self.spec)
        kept = nms(boxes, scores, self.iou_threshold, classes)
        return RawDetections(boxes[kept], scores[kept], classes[kept])
