"""Test doubles that implement the real protocols (no mocks of the code under test)."""

from __future__ import annotations

import csv
import io
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from shoplens.config import Settings
from shoplens.models.base import FloatArray, PreprocessConfig, l2_normalise

GRID = 4


class HistEmbedder:
    """A deterministic ImageEmbedder: a 4x4 colour thumbnail, centred and normalised.

    ``SHOPLENS_TEST_EMBED_DELAY`` (seconds per batch) slows it down so a test
    can kill a run part-way through.
    """

    def __init__(self, name: str = "test-thumb") -> None:
        self._name = name
        self._cfg = PreprocessConfig(resize=32, crop=32, interpolation="bilinear")

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        return GRID * GRID * 3

    @property
    def preprocess_config(self) -> PreprocessConfig:
        return self._cfg

    @property
    def head_dims(self) -> int | None:
        return None  # a thumbnail has no head part to fall back to

    def prepare(self, image: Image.Image) -> FloatArray:
        small = image.convert("RGB").resize((GRID, GRID), Image.Resampling.BOX)
        arr = np.asarray(small, dtype=np.float32) / 255.0
        return np.ascontiguousarray(arr.transpose(2, 0, 1))

    def embed_prepared(self, batch: FloatArray) -> FloatArray:
        delay = float(os.environ.get("SHOPLENS_TEST_EMBED_DELAY", "0") or 0)
        if delay:
            time.sleep(delay)
        x = np.asarray(batch, np.float32).reshape(len(batch), -1) - 0.5
        return l2_normalise(x)

    def embed(self, images: Sequence[Image.Image]) -> FloatArray:
        return self.embed_prepared(np.stack([self.prepare(im) for im in images]))


def image_bytes(seed: int, size: int = 48, fmt: str = "JPEG") -> bytes:
    """A distinct, deterministic picture: 4x4 random colour blocks."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(GRID, GRID, 3), dtype=np.uint8)
    img = Image.fromarray(blocks, "RGB").resize((size, size), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format=fmt, quality=95) if fmt == "JPEG" else img.save(buf, format=fmt)
    return buf.getvalue()


def write_catalog(
    root: Path,
    n_products: int,
    images_per_product: int = 2,
    *,
    fmt: str = "csv",
    seed0: int = 0,
    extra: dict[str, str] | None = None,
) -> Path:
    """Generate images and a manifest (``catalog.csv`` or ``catalog.jsonl``) under ``root``."""
    (root / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for p in range(n_products):
        for i in range(images_per_product):
            seed = seed0 + p * 1000 + i
            name = f"img/p{p}_{i}.jpg"
            path = root / name
            if not path.exists():
                path.write_bytes(image_bytes(seed))
            rows.append(
                {
                    "product_id": f"p{p}",
                    "image": name,
                    "title": f"Product {p}",
                    "category": "even" if p % 2 == 0 else "odd",
                    "price": f"{p}.50",
                    "currency": "EUR",
                    "in_stock": "yes" if p % 3 else "no",
                    **(extra or {}),
                }
            )
    if fmt == "csv":
        path = root / "catalog.csv"
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    else:
        path = root / "catalog.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# The model the suite runs: the configured default (SHOPLENS_MODEL may override).
DEFAULT_MODEL = Settings().model
