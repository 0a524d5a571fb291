from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Box:
    """Relative coordinates in [0, 1] of the source frame, x right, y down."""

    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def area(self) -> float:
        return max(0.0, self.x1 - self.x0) * max(0.0, self.y1 - self.y0)

    @property
    def bottom_centre(self) -> tuple[float, float]:
        return ((self.x0 + self.x1) / 2, self.y1)

    def pixels(self, width: int, height: int) -> tuple[int, int, int, int]:
        return (
            round(self.x0 * width),
            round(self.y0 * height),
            round(self.x1 * width),
            round(self.y1 * height),
        )

    def as_list(self) -> list[float]:
        return [round(v, 4) for v in (self.x0, self.y0, self.x1, self.y1)]


@dataclass(frozen=True, slots=True)
class Detection:
    label: str
    class_id: int
    score: float
    box: Box
    frame_size: tuple[int, int]  # (width, height) of the frame the box refers to

    @property
    def box_px(self) -> tuple[int, int, int, int]:
        return self.box.pixels(*self.frame_size)

    def to_json(self) -> dict[str, object]:
        return {
            "label": self.label,
            "score": round(self.score, 4),
            "box": list(self.box_px),
            "box_rel": self.box.as_list(),
        }
