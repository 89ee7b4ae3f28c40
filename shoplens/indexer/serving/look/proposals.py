"""Class-agnostic candidate boxes: where in the photo a product may be.

Defaults were tuned on the even rows of a room-photo set (IKEA dev rooms,
``benchmarks/look.py``); the odd rows are the held-out check.

No detector weights are needed (nothing may be downloaded): OpenCV's
selective search groups a small copy of the photo into regions of similar
colour and texture, which finds objects of any kind and size, and a coarse
grid of windows at a few scales and shapes covers what it misses (a rug, a
wall of shelves). Both are cheap next to embedding the crops, which is why
the total is capped.
"""

from __future__ import annotations

import ctypes
import math
import threading
from dataclasses import dataclass

import numpy as np
from PIL import Image

from shoplens.indexer.serving.look.boxes import Box, suppress

_SEEDED = threading.Lock()


def _seed_c_rand() -> None:
    try:
        ctypes.CDLL(None).srand(0)
    except (OSError, AttributeError):  # no C runtime symbols to reach (not Linux/macOS)
        return


@dataclass(frozen=True)
class ProposalConfig:
    """How many boxes, from where; defaults tuned on half of a room-photo set."""

    # Selective search runs on a copy this long: ~0.1 s on one core at 224 px.
    segment_side: int = 224
    # Segments whose short side is under this share of the photo's are too small
    # to embed usefully (a knob, a handle) and would crowd out real products.
    min_side: float = 0.08
    max_area: float = 0.8  # the whole photo is searched anyway
    max_aspect: float = 4.0
    dedupe_iou: float = 0.7  # near-identical segments cost a crop each and add nothing
    max_segments: int = 72
    # Windows: side as a share of the photo's short side, (w/h) aspect, step as share of
    # side. One scale of squares did as well as three scales and shapes on the tuning
    # rooms (larger things are what the segments find) at a quarter of the crops.
    window_scales: tuple[float, ...] = (0.35,)
    window_aspects: tuple[float, ...] = (1.0,)
    window_step: float = 0.67


def segments(image: Image.Image, cfg: ProposalConfig) -> list[Box]:
    """Selective search ("fast" mode) boxes, largest-first order as OpenCV ranks them."""
    import cv2  # a serving dependency, but only regions=auto needs it: import on use

    width, height = image.size
    scale = cfg.segment_side / max(width, height)
    small = (
        image
        if scale >= 1
        else image.resize(
            (max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BOX
        )
    )
    sw, sh = small.size
    search = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    search.setBaseImage(np.ascontiguousarray(np.asarray(small)[:, :, ::-1]))  # OpenCV is BGR
    search.switchToSelectiveSearchFast()
    with _SEEDED:
        # OpenCV ranks the hierarchy's regions by level times C's rand(): unseeded,
        # the same photo got its boxes in another order, so other boxes past the cap,
        # on every call. Seeded under a lock so concurrent requests cannot interleave.
        _seed_c_rand()
        found = search.process()
    short = min(sw, sh)
    out: list[Box] = []
    for x, y, bw, bh in found:
        if min(bw, bh) < cfg.min_side * short or bw * bh > cfg.max_area * sw * sh:
            continue
        if max(bw / bh, bh / bw) > cfg.max_aspect:
            continue
        out.append(Box(x / sw, y / sh, bw / sw, bh / sh))
    # Earlier (OpenCV's order) wins the dedupe: it ranks hierarchical groupings first.
    # Kept in index order (the scores fall with it), so the first max_segments kept
    # are the answer: stop there.
    keep = suppress(out, [-float(i) for i in range(len(out))], cfg.dedupe_iou, cfg.max_segments)
    return [out[i] for i in keep]


def windows(width: int, height: int, cfg: ProposalConfig) -> list[Box]:
    """A grid of windows per scale and aspect, spanning the photo edge to edge."""
    short = min(width, height)
    out: list[Box] = []
    for scale in cfg.window_scales:
        for aspect in cfg.window_aspects:
            bw = scale * short * math.sqrt(aspect)
            bh = scale * short / math.sqrt(aspect)
            if bw > width or bh > height:
                continue
            nx = math.ceil((width - bw) / (bw * cfg.window_step)) + 1
            ny = math.ceil((height - bh) / (bh * cfg.window_step)) + 1
            for i in range(nx):
                for j in range(ny):
                    x = (width - bw) * i / max(1, nx - 1)
                    y = (height - bh) * j / max(1, ny - 1)
                    out.append(Box(x / width, y / height, bw / width, bh / height))
    return out


def propose(image: Image.Image, cfg: ProposalConfig | None = None) -> list[Box]:
    """Segments first, then windows: the candidate boxes of one photo."""
    cfg = cfg or ProposalConfig()
    return segments(image, cfg) + windows(*image.size, cfg)
