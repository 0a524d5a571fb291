"""TEST DOUBLE for the camera pipeline (drivers/camera.py, agent/detection/), which is
not merged yet. It implements the ``Verifier`` protocol with fixed answers: a
camera "shows" either a person or an empty scene, chosen by the test. No frame
is grabbed and no detector runs here; the JPEG is synthetic but real.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import cv2
import numpy as np

from shaobing.agent.verification import CameraDown, VerificationResult


def synthetic_jpeg(text: str = "shaobing test") -> bytes:
    image = np.full((240, 320, 3), 60, dtype=np.uint8)
    cv2.putText(image, text, (10, 120), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2)
    ok, buf = cv2.imencode(".jpg", image)
    assert ok
    return buf.tobytes()


class FakeCamera:
    """Scenes: "person", "vehicle", "empty", "dark" (no frame), "stuck" (never answers in
    time), "down" (in an outage: snapshot refuses)."""

    def __init__(self, scenes: dict[str, str] | None = None):
        self.scenes = dict(scenes or {})
        self.calls: list[tuple[tuple[str, ...], float]] = []
        self.release = threading.Event()  # lets a "stuck" camera go at the end of a test

    def verify(
        self, camera_ids: Sequence[str], deadline: float, frames: int = 5
    ) -> VerificationResult | None:
        self.calls.append((tuple(camera_ids), deadline))
        for camera in camera_ids:
            scene = self.scenes.get(camera, "empty")
            if scene == "stuck":
                self.release.wait(max(0.0, deadline - time.monotonic()) + 2.0)
                return None
            if scene == "person":
                return VerificationResult(
                    labels=("person", "dog"),
                    scores=(0.91, 0.40),
                    snapshot_jpeg=synthetic_jpeg("person"),
                    camera_id=camera,
                    frames=frames,
                )
            if scene == "vehicle":
                return VerificationResult(
                    labels=("car",),
                    scores=(0.77,),
                    snapshot_jpeg=synthetic_jpeg("car"),
                    camera_id=camera,
                    frames=frames,
                )
        if all(self.scenes.get(c, "empty") == "dark" for c in camera_ids):
            return None
        # An empty scene: the detector ran and found nothing of interest.
        return VerificationResult(
            labels=("bird",),
            scores=(0.30,),
            snapshot_jpeg=synthetic_jpeg("empty"),
            camera_id=camera_ids[0],
            frames=frames,
        )

    def snapshot(self, camera_id: str, deadline: float) -> bytes:
        if camera_id not in self.scenes:
            raise KeyError(camera_id)
        if self.scenes[camera_id] == "dark":
            raise TimeoutError(camera_id)
        if self.scenes[camera_id] == "down":
            raise CameraDown(camera_id, 42.0)
        return synthetic_jpeg(camera_id)


class ScriptedSource:
    """A ``FrameSource`` (drivers/camera.py) that plays a list of reads, then ends.

    Each step is an image (a fresh frame), ``None`` (a failed read) or a
    callable run inside read() before the next step (a hook that moves a test
    clock or waits for the test), so the camera's timing is under the test's
    control and no step depends on machine speed.
    """

    def __init__(self, steps, opened: bool = True) -> None:
        self.steps = list(steps)
        self.opened = opened
        self.done = threading.Event()

    def isOpened(self) -> bool:
        return self.opened

    def read(self):
        while self.steps:
            step = self.steps.pop(0)
            if callable(step):
                step()
                continue
            return (step is not None), step
        self.done.set()
        return False, None

    def release(self) -> None:
        self.done.set()


def scripted_opener(*sources: ScriptedSource):
    """Each open takes the next source; past the last, the camera cannot open."""
    queue = list(sources)
    return lambda: queue.pop(0) if queue else ScriptedSource([], opened=False)
