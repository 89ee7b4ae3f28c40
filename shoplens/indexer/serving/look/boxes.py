"""Boxes as fractions of the photo, and greedy non-maximum suppression."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Box:
    """A rectangle as fractions 0-1 of the photo as shown (EXIF orientation applied)."""

    x: float
    y: float
    w: float
    h: float

    @property
    def area(self) -> float:
        return self.w * self.h

    def iou(self, other: Box) -> float:
        """Intersection over union, 0 for disjoint boxes."""
        ix = min(self.x + self.w, other.x + other.w) - max(self.x, other.x)
        iy = min(self.y + self.h, other.y + other.h) - max(self.y, other.y)
        if ix <= 0 or iy <= 0:
            return 0.0
        inter = ix * iy
        return inter / (self.area + other.area - inter)

    def pixels(self, width: int, height: int) -> tuple[int, int, int, int]:
        """``(left, top, right, bottom)`` in a ``width`` x ``height`` image, at least 1 px."""
        left = min(max(0, math.floor(self.x * width)), width - 1)
        top = min(max(0, math.floor(self.y * height)), height - 1)
        right = max(left + 1, min(width, math.ceil((self.x + self.w) * width)))
        bottom = max(top + 1, min(height, math.ceil((self.y + self.h) * height)))
        return left, top, right, bottom

    def within(self, outer: Box) -> Box:
        """This box, given as fractions of ``outer``, as fractions of what ``outer`` is in."""
        return Box(
            outer.x + self.x * outer.w,
            outer.y + self.y * outer.h,
            self.w * outer.w,
            self.h * outer.h,
        )

    def rounded(self, digits: int = 4) -> Box:
        return Box(*(round(v, digits) for v in (self.x, self.y, self.w, self.h)))


def suppress(boxes: Sequence[Box], scores: Sequence[float], max_iou: float) -> list[int]:
    """Indices of the boxes kept by greedy NMS, best score first.

    A box is dropped when it overlaps a better kept box by more than
    ``max_iou``. Nested boxes (a cushion on the sofa) overlap little by IoU
    and are both kept; the caller keeps them apart by what they matched.
    """
    order = sorted(range(len(boxes)), key=lambda i: -scores[i])
    kept: list[int] = []
    for i in order:
        box = boxes[i]
        if all(box.iou(boxes[j]) <= max_iou for j in kept):
            kept.append(i)
    return kept
