"""Boxes as fractions of the photo, and greedy non-maximum suppression."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


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


def suppress(
    boxes: Sequence[Box], scores: Sequence[float], max_iou: float, limit: int | None = None
) -> list[int]:
    """Indices of the boxes kept by greedy NMS, best score first (at most ``limit``).

    A box is dropped when it overlaps a better kept box by more than
    ``max_iou``. Nested boxes (a cushion on the sofa) overlap little by IoU
    and are both kept; the caller keeps them apart by what they matched.
    Each candidate is compared with all kept boxes at once in numpy, with the
    same arithmetic as :meth:`Box.iou`: a room's selective search gives
    thousands of candidates, and box-by-box Python comparisons cost ~0.1 s.
    """
    order = sorted(range(len(boxes)), key=lambda i: -scores[i])
    coords = np.array([(b.x, b.y, b.w, b.h) for b in boxes], dtype=np.float64).reshape(-1, 4)
    x0, y0, w, h = coords.T
    x1, y1, area = x0 + w, y0 + h, w * h
    kept: list[int] = []
    for i in order:
        if kept:
            ix = np.minimum(x1[i], x1[kept]) - np.maximum(x0[i], x0[kept])
            iy = np.minimum(y1[i], y1[kept]) - np.maximum(y0[i], y0[kept])
            overlap = (ix > 0) & (iy > 0)
            inter = ix[overlap] * iy[overlap]
            if np.any(inter / (area[i] + area[kept][overlap] - inter) > max_iou):
                continue
        kept.append(i)
        if limit is not None and len(kept) == limit:
            break
    return kept
