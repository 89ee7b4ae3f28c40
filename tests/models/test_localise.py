"""The studio photo's free mask: a product on white gets a tight box; a shelf photo none."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

from shoplens.models.localise import mask_box, white_background_mask


def _jpeg(image: Image.Image) -> np.ndarray:
    # Through JPEG: the ringing around the product is what real studio photos have.
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=80)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def test_a_product_on_white_gets_a_tight_mask() -> None:
    im = Image.new("RGB", (200, 200), (255, 255, 255))
    draw = ImageDraw.Draw(im)
    draw.rectangle((60, 30, 139, 169), fill=(200, 40, 30))  # the carton
    draw.ellipse((70, 40, 129, 99), fill=(250, 250, 250))  # a white label inside it
    mask = white_background_mask(_jpeg(im))
    assert mask is not None
    left, top, right, bottom = mask_box(mask, margin=0.0)
    # Within JPEG ringing (a few pixels) of the carton's edges.
    assert abs(left - 60) <= 4 and abs(top - 30) <= 4
    assert abs(right - 140) <= 4 and abs(bottom - 170) <= 4
    assert mask[100, 100] == 255 and mask[5, 5] == 0
    # The margin is a share of the product's longer side, clipped to the photo.
    assert mask_box(mask, margin=0.1)[1] == max(0, top - 14)


def test_a_shelf_photo_has_no_white_background_mask() -> None:
    rng = np.random.default_rng(3)
    shelf = rng.integers(0, 200, size=(120, 160, 3), dtype=np.uint8)
    assert white_background_mask(shelf) is None
    assert white_background_mask(np.full((50, 50, 3), 255, np.uint8)) is None  # nothing there
