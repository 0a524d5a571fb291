"""Bounded latest-frame holder: the pipeline overwrites, the console reads; nobody waits."""

import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class AnnotatedFrame:
    jpeg: bytes
    detections: tuple[dict, ...] = ()


class LatestFrames:
    """One slot per camera; put() never blocks on readers, so a slow phone cannot slow a camera."""

    def __init__(self, max_bytes: int = 512_000) -> None:
        self._lock = threading.Lock()
        self._frames: dict[str, AnnotatedFrame] = {}
        self._max_bytes = max_bytes

    def put(self, camera: str, frame: AnnotatedFrame) -> None:
        if len(frame.jpeg) > self._max_bytes:
            return
        with self._lock:
            self._frames[camera] = frame

    def get(self, camera: str) -> AnnotatedFrame | None:
        with self._lock:
            return self._frames.get(camera)

    def cameras(self) -> list[str]:
        with self._lock:
            return sorted(self._frames)
