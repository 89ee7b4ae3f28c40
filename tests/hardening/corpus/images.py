"""Hostile images by mutation: one small valid file per format, truncated,
bit-flipped and overwritten, plus the hand-made cases of :mod:`image_lies`.
"""

from __future__ import annotations

import io
import random
from typing import Any

from PIL import Image

from tests.hardening.corpus import Case
from tests.hardening.corpus.image_lies import fill, targeted_images


def _photo(size: tuple[int, int] = (64, 48)) -> Image.Image:
    img = Image.new("RGB", size)
    px = img.load()
    assert px is not None
    for y in range(size[1]):
        for x in range(size[0]):
            px[x, y] = (x * 4 % 256, y * 5 % 256, (x * y) % 256)
    return img


def _encode(fmt: str, **kw: Any) -> bytes:
    out = io.BytesIO()
    img = _photo()
    if fmt == "HEIF":
        import pillow_heif

        pillow_heif.register_heif_opener()
    if fmt == "GIF":
        img = img.convert("P")
    img.save(out, fmt, **kw)
    return out.getvalue()


def base_images() -> dict[str, bytes]:
    """One small valid file per accepted format (those this Pillow can write)."""
    out: dict[str, bytes] = {}
    for name, fmt in (
        ("jpeg", "JPEG"),
        ("png", "PNG"),
        ("webp", "WEBP"),
        ("gif", "GIF"),
        ("heif", "HEIF"),
        ("avif", "AVIF"),
    ):
        try:
            out[name] = _encode(fmt)
        except (KeyError, OSError, ImportError, ValueError):
            continue  # no encoder here: the hand-made cases of image_lies still cover it
    return out


def _bitflips(data: bytes, seed: int, n: int) -> bytes:
    rnd = random.Random(seed)
    b = bytearray(data)
    for _ in range(n):
        i = rnd.randrange(len(b))
        b[i] ^= 1 << rnd.randrange(8)
    return bytes(b)


def _mutations(name: str, data: bytes) -> list[Case]:
    """Truncations, bit flips and overwritten ranges of one valid file (30 cases)."""
    n = len(data)
    cases: list[Case] = []
    for cut in (1, 2, 4, 8, 12, 16, 24, 32, 64, n // 4, n // 2, n * 3 // 4, n - 16, n - 2, n - 1):
        cases.append((f"{name}-trunc-{cut}", data[: max(cut, 1)]))
    for seed in range(8):
        flips = 1 if seed < 4 else 16
        cases.append((f"{name}-bitflip-{seed}x{flips}", _bitflips(data, seed, flips)))
    for start, value in ((4, 0xFF), (12, 0x00), (20, 0xFF), (n // 2, 0x00)):
        cases.append((f"{name}-fill-{start}-{value}", fill(data, start, 16, value)))
    cases.append((f"{name}-header-only-x2", data[:64] + data[:64]))
    cases.append((f"{name}-doubled", data + data))
    cases.append((f"{name}-garbage-tail", data[: n // 2] + bytes(range(256)) * 4))
    return cases


def malformed_images() -> list[Case]:
    """At least 200 hostile images: mutations of every format plus hand-made lies."""
    bases = base_images()
    cases: list[Case] = []
    for name, data in sorted(bases.items()):
        cases.extend(_mutations(name, data))
    cases.extend(targeted_images(bases))
    return cases
