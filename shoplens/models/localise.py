"""Where the product is in a photo, without a network: the studio photo's free mask.

A studio catalog photo shows the product on a plain white (or near-white)
background, so the product is simply every pixel that is not background. The
mask is what local features of a catalog photo are computed on
(:mod:`shoplens.indexer.serving.rerank`): keypoints on the white border or on
JPEG ringing around the product would only match other studio photos.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

U8 = NDArray[np.uint8]

# A pixel is background when every channel is at least this bright. JPEG noise
# around pure white reaches ~240; product highlights rarely stay above it in
# all three channels over a large area.
WHITE_LEVEL = 236
# Below this share of foreground pixels the photo is not a product on white
# (or it is an almost empty image): no mask.
MIN_FOREGROUND = 0.02
# A photo whose border is mostly background is a studio shot; a shelf photo
# touches the frame with products and shelf edges everywhere.
MIN_WHITE_BORDER = 0.6


def white_background_mask(rgb: U8) -> U8 | None:
    """``(h, w)`` uint8 mask (255 = product) of a product photographed on white.

    ``rgb``: ``(h, w, 3)`` uint8. None when the photo does not look like a studio
    shot (its border is not mostly white) or when nothing but white is left.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or min(rgb.shape[:2]) < 8:
        return None
    background: NDArray[np.bool_] = np.all(rgb >= WHITE_LEVEL, axis=2)
    border = np.concatenate(
        [background[0], background[-1], background[1:-1, 0], background[1:-1, -1]]
    )
    if float(border.mean()) < MIN_WHITE_BORDER:
        return None
    foreground = ~background
    if float(foreground.mean()) < MIN_FOREGROUND:
        return None
    return np.where(foreground, np.uint8(255), np.uint8(0)).astype(np.uint8)


def mask_box(mask: U8, margin: float = 0.04) -> tuple[int, int, int, int]:
    """``(left, top, right, bottom)`` of the mask's foreground plus a ``margin``
    (fraction of its longer side), clipped to the image; the whole image when empty."""
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return 0, 0, w, h
    x0, x1, y0, y1 = int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1
    m = round(margin * max(x1 - x0, y1 - y0))
    return max(0, x0 - m), max(0, y0 - m), min(w, x1 + m), min(h, y1 + m)
