"""Shared set-up of the tests that run the Ray engine's driver against the local
engine: one folder of mixed photos (three formats, a duplicate, a non-image, a
missing file, a URL without a fetcher), and a run of an engine over it."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from shoplens.config import Settings
from shoplens.indexer.catalog.store import CatalogStore
from shoplens.indexer.engines.base import EmbedResult
from shoplens.indexer.sources.manifest import ImageRef
from shoplens.models.base import FloatArray, ImageEmbedder


def encoded(fmt: str, seed: int, size: tuple[int, int]) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, fmt)
    return out.getvalue()


def mixed_refs(photos: Path, seed: int) -> list[ImageRef]:
    """Refs at lines 2-6 (a, b, c, bad, a-again), 20 (missing file), 21 (URL)."""
    photos.mkdir()
    files = {
        "a.jpg": encoded("JPEG", seed, (300, 200)),
        "b.png": encoded("PNG", seed + 1, (90, 120)),
        "c.webp": encoded("WEBP", seed + 2, (100, 100)),
        "bad.jpg": b"<!doctype html><html>gone</html>",
    }
    files["a-again.jpg"] = files["a.jpg"]  # same content under another name
    for name, data in files.items():
        (photos / name).write_bytes(data)
    refs = [
        ImageRef(line=i + 2, product_id=f"p{i}", source=name, path=photos / name)
        for i, name in enumerate(files)
    ]
    refs.append(ImageRef(line=20, product_id="p20", source="gone.jpg", path=photos / "gone.jpg"))
    refs.append(ImageRef(line=21, product_id="p21", source="http://x/1.jpg", url="http://x/1.jpg"))
    return refs


def run_engine(
    engine: Callable[..., EmbedResult],
    embedder: ImageEmbedder,
    refs: Sequence[ImageRef],
    data_dir: Path,
    **kwargs: Any,
) -> tuple[EmbedResult, dict[str, FloatArray]]:
    """Run one engine into ``data_dir`` (batch size 2); its result and stored vectors."""
    settings = Settings(data_dir=data_dir, batch_size=2)
    with CatalogStore(settings.db_path) as store:
        res = engine(settings, store, embedder, refs, **kwargs)
        vectors = store.get_embeddings(embedder.name, list(res.shas.values()))
    return res, vectors
