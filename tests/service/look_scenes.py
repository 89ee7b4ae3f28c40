"""Generated "shop the look" scenes: demo catalog photos pasted onto one canvas.

A scene knows where each product was pasted, as fractions of the picture as
shown, so tests can check that every product is found in its own region and
that the region's box is where the product is.
"""

from __future__ import annotations

from dataclasses import dataclass
from io import BytesIO

from PIL import Image

from shoplens import demo

SIZE = (960, 640)
BACKGROUND = (228, 222, 210)  # a wall, not white: the catalog's own background is white
SIDE = 240

#: (product id, left, top) in pixels of the shown scene: three products far apart.
PLACED: tuple[tuple[str, int, int], ...] = (
    ("banana", 40, 60),
    ("oatly-oat-milk", 380, 40),
    ("red-bell-pepper", 680, 360),
)


@dataclass(frozen=True)
class Scene:
    image: Image.Image
    boxes: dict[str, tuple[float, float, float, float]]  # product -> x, y, w, h fractions


def scene(placed: tuple[tuple[str, int, int], ...] = PLACED) -> Scene:
    canvas = Image.new("RGB", SIZE, BACKGROUND)
    boxes = {}
    for product_id, left, top in placed:
        photo = Image.open(demo.DEMO_DIR / "images" / f"{product_id}.jpg").convert("RGB")
        canvas.paste(photo.resize((SIDE, SIDE), Image.Resampling.BICUBIC), (left, top))
        boxes[product_id] = (left / SIZE[0], top / SIZE[1], SIDE / SIZE[0], SIDE / SIZE[1])
    return Scene(canvas, boxes)


def jpeg(image: Image.Image, orientation: int = 1) -> bytes:
    """JPEG bytes that *show* ``image``: with ``orientation`` 6 the pixels are stored
    turned a quarter left and the EXIF tag says to turn them back, as phones do."""
    out = BytesIO()
    stored = image if orientation == 1 else image.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(out, "JPEG", quality=92, exif=exif.tobytes())
    return out.getvalue()


def _intersection(a: tuple[float, float, float, float], b: dict[str, float]) -> float:
    ax, ay, aw, ah = a
    ix = min(ax + aw, b["x"] + b["w"]) - max(ax, b["x"])
    iy = min(ay + ah, b["y"] + b["h"]) - max(ay, b["y"])
    return max(0.0, ix) * max(0.0, iy)


def on_product(pasted: tuple[float, float, float, float], found: dict[str, float]) -> bool:
    """The found box is on the pasted photo: nearly all of it inside, and covering at
    least a fifth of it (a tight box around a milk carton is narrower than its photo)."""
    inter = _intersection(pasted, found)
    return inter >= 0.8 * found["w"] * found["h"] and inter >= 0.2 * pasted[2] * pasted[3]
