"""The ``Verifier`` backed by the on-device camera pipeline (agent/detection).

It reads the newest frames of the running cameras without taking them (the
pipeline keeps its own frames) and runs the pipeline's detector on them; the
detector serialises its interpreter with a lock, so verification and the
pipeline's inference thread share one model and interleave frame by frame.

A burst stops early at the first frame showing a label of interest, so a
verified alarm costs about one inference; a clean scene costs ``frames``
inferences or whatever fits before the deadline.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence

from shaobing.agent.detection.pipeline import DetectionPipeline, snapshot_frame
from shaobing.agent.detection.snapshot import encode_capped, snapshot
from shaobing.agent.detection.types import Detection
from shaobing.agent.verification import CameraDown, VerificationResult

POLL_S = 0.02


class PipelineVerifier:
    def __init__(
        self, pipeline: DetectionPipeline, labels: Collection[str], min_score: float
    ) -> None:
        self._pipeline = pipeline
        self.labels = set(labels)
        self.min_score = min_score

    def _cam(self, camera_id: str):
        try:
            return self._pipeline.camera(camera_id)
        except StopIteration:
            raise KeyError(camera_id) from None

    def verify(
        self, camera_ids: Sequence[str], deadline: float, frames: int = 5
    ) -> VerificationResult | None:
        cams = []
        for camera_id in camera_ids:
            try:
                cams.append(self._cam(camera_id))
            except KeyError:
                continue  # a zone may name a camera that is disabled: verify with the rest
        if not cams:
            return None
        best: dict[str, float] = {}
        shot: tuple[float, bytes, str] | None = None  # (score, jpeg, camera)
        seen = {c.cfg.id: -1 for c in cams}
        analysed = {c.cfg.id: 0 for c in cams}
        while time.monotonic() < deadline and any(n < frames for n in analysed.values()):
            fresh = False
            for c in cams:
                cam_id = c.cfg.id
                if analysed[cam_id] >= frames:
                    continue
                frame = c.camera.latest()
                if frame is None or frame.seq == seen[cam_id]:
                    continue
                fresh = True
                seen[cam_id] = frame.seq
                analysed[cam_id] += 1
                result = self._pipeline.detector.detect(frame.image)
                for det in result.detections:
                    best[det.label] = max(best.get(det.label, 0.0), det.score)
                hits = [d for d in result.detections if self._of_interest(d)]
                if hits:
                    top = max(d.score for d in hits)
                    if shot is None or top > shot[0]:
                        # The main stream's frame when the camera has one (within the deadline).
                        wait_s = min(c.cfg.snapshot.wait_s, max(0.0, deadline - time.monotonic()))
                        image, shown, _ = snapshot_frame(c, frame.image, hits, wait_s)
                        jpeg = snapshot(image, shown, c.cfg.snapshot_max_bytes)
                        shot = (top, jpeg, cam_id)
                    # A person or vehicle seen: answer now, every second counts.
                    return self._result(best, shot, analysed)
            if not fresh:
                time.sleep(POLL_S)
        if not any(analysed.values()):
            return None
        return self._result(best, shot, analysed)

    def _of_interest(self, det: Detection) -> bool:
        return det.label in self.labels and det.score >= self.min_score

    @staticmethod
    def _result(best, shot, analysed) -> VerificationResult:
        labels = tuple(sorted(best, key=best.get, reverse=True))
        return VerificationResult(
            labels=labels,
            scores=tuple(best[label] for label in labels),
            snapshot_jpeg=shot[1] if shot else None,
            camera_id=shot[2] if shot else None,
            frames=sum(analysed.values()),
        )

    def snapshot(self, camera_id: str, deadline: float) -> bytes:
        """The snapshot stream's frame (converted now) when there is one and it is not down."""
        c = self._cam(camera_id)
        if c.snap is not None and c.snap.down_for() is None and c.camera.down_for() is None:
            frame = c.snap.request(max(0.0, deadline - time.monotonic()))
            if frame is None:
                raise TimeoutError(camera_id)
            return encode_capped(frame.image, c.cfg.snapshot_max_bytes)
        while True:
            down_s = c.camera.down_for()
            if down_s is not None:
                raise CameraDown(camera_id, down_s)
            frame = c.camera.latest()
            if frame is not None:
                return encode_capped(frame.image, c.cfg.snapshot_max_bytes)
            if time.monotonic() >= deadline:
                raise TimeoutError(camera_id)
            time.sleep(POLL_S)
