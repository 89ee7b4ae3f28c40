"""Generated shoppers' photos that share their surroundings: coloured cartons on one
kind of wooden shelf, and a studio catalog of the cartons on white plus a wooden
crate that looks like the shelf. Uncentred, the shelf pulls shoppers' photos to
the crate (a "hub"); centred on the shop's searches, each finds its carton.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COLOURS = [
    (200, 40, 40),
    (40, 160, 60),
    (40, 80, 200),
    (230, 200, 40),
    (160, 60, 180),
    (240, 130, 30),
]
WOOD = (120, 90, 60)


def carton(i: int) -> Image.Image:
    """Carton ``i``: its own colour, darker dots printed on it."""
    rng = np.random.default_rng(i)
    colour = COLOURS[i]
    im = Image.new("RGB", (160, 220), colour)
    draw = ImageDraw.Draw(im)
    for _ in range(25):
        x, y = (int(v) for v in rng.integers(0, 140, 2))
        s = int(rng.integers(8, 30))
        draw.ellipse((x, y + 20, x + s, y + 20 + s), fill=tuple(int(c * 0.6) for c in colour))
    return im


def shelf(seed: int) -> Image.Image:
    """A 480 px wooden shelf: planks and lighter clutter, placed by ``seed``."""
    rng = np.random.default_rng(1000 + seed)
    im = Image.new("RGB", (480, 480), WOOD)
    draw = ImageDraw.Draw(im)
    for y in range(0, 480, 24):
        draw.rectangle((0, y, 480, y + 6), fill=(90, 60, 40))
    for _ in range(40):
        x, y = (int(v) for v in rng.integers(0, 460, 2))
        draw.rectangle((x, y, x + 20, y + 12), fill=(150, 120, 90))
    return im


def on_white(im: Image.Image) -> Image.Image:
    out = Image.new("RGB", (260, 300), (255, 255, 255))
    out.paste(im, ((260 - im.width) // 2, (300 - im.height) // 2))
    return out


def shopper_photo(i: int, seed: int) -> Image.Image:
    """Carton ``i`` turned a little, somewhere on shelf ``seed``."""
    scene = shelf(seed)
    turned = carton(i).rotate(8, expand=True, fillcolor=WOOD)
    scene.paste(turned, (60 + 30 * (seed % 5), 80 + 20 * (seed % 4)))
    return scene


def shopper_photos(seeds: int) -> list[tuple[str, Image.Image]]:
    """``(product id, photo)`` of every carton on ``seeds`` shelves."""
    return [(f"p{i}", shopper_photo(i, s)) for s in range(seeds) for i in range(len(COLOURS))]


def studio_catalog(root: Path) -> Path:
    """The cartons on white (``p0``..``p5``) and the wooden crate (``crate``); a manifest."""
    (root / "img").mkdir(parents=True)
    lines = ["product_id,title,image"]
    for i in range(len(COLOURS)):
        on_white(carton(i)).save(root / "img" / f"s{i}.png")
        lines.append(f"p{i},Carton {i},img/s{i}.png")
    on_white(shelf(99).crop((0, 0, 200, 240))).save(root / "img" / "crate.png")
    lines.append("crate,Wooden crate,img/crate.png")
    (root / "catalog.csv").write_text("\n".join(lines) + "\n")
    return root / "catalog.csv"
