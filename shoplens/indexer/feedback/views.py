"""More views of each kept shopper photo for the adaptation to learn from: three
crops (the centre 80 %, the top-left and the bottom-right 75 %), embedded once
per model and cached beside the photo.

Why: with a few shopper photos per product, the adaptation (LDA) estimates how
one product varies from too few samples. A shopper's photo framed a little
differently is still the same product on the same shelf, and teaches exactly
the variation the next shopper's framing brings. On the grocery studio
catalog with 5 confirmed photos per product (``benchmarks/results/learn.md``,
dev = the later train photos of each product, val reported) they lifted R@1
0.900 -> 0.913 on dev and 0.723 -> 0.760 on val; a mirrored view added nothing
on dev. They are learning samples only, never search entries.

``data_dir/feedback/views/<model>/<photo_id>.npy``: ``(3, dim)`` float32,
deleted with the photo (``photos.drop_kept``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from io import BytesIO
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from shoplens.files.atomic import write_atomic
from shoplens.indexer.feedback.photos import kept_path, views_root
from shoplens.models.base import ImageEmbedder
from shoplens.models.cache import safe_name

log = logging.getLogger(__name__)

# (left, top, right, bottom) as fractions of the photo.
VIEWS: tuple[tuple[float, float, float, float], ...] = (
    (0.1, 0.1, 0.9, 0.9),
    (0.0, 0.0, 0.75, 0.75),
    (0.25, 0.25, 1.0, 1.0),
)
_BATCH = 16  # photos embedded per call (3 views each)


def views_dir(data_dir: Path, model: str) -> Path:
    return views_root(data_dir) / safe_name(model)


def crops(image: Image.Image) -> list[Image.Image]:
    """The :data:`VIEWS` of ``image``."""
    w, h = image.size
    return [
        image.crop((round(l * w), round(t * h), max(round(r * w), 1), max(round(b * h), 1)))
        for l, t, r, b in VIEWS  # noqa: E741 (left, top, right, bottom)
    ]


def view_vectors(
    data_dir: Path, embedder: ImageEmbedder, photo_ids: Sequence[str]
) -> list[NDArray[np.float32] | None]:
    """``(len(VIEWS), dim)`` vectors per photo (cached), None where the photo is gone
    or unreadable (deleted since it was approved: it is simply not learnt from)."""
    folder = views_dir(data_dir, embedder.name)
    out: list[NDArray[np.float32] | None] = [None] * len(photo_ids)
    todo: list[tuple[int, Image.Image]] = []
    for i, photo_id in enumerate(photo_ids):
        cached = _read(folder / f"{photo_id}.npy", embedder.dim)
        if cached is not None:
            out[i] = cached
            continue
        try:
            # Our own re-encoded JPEG, bounded in size: no untrusted bytes.
            with Image.open(kept_path(data_dir, photo_id)) as im:
                todo.append((i, im.convert("RGB")))
        except (OSError, ValueError) as exc:
            log.warning("shopper photo %s not learnt from with views: %s", photo_id, exc)
        if len(todo) >= _BATCH:
            _embed(folder, embedder, photo_ids, todo, out)
            todo = []
    if todo:
        _embed(folder, embedder, photo_ids, todo, out)
    return out


def _embed(
    folder: Path,
    embedder: ImageEmbedder,
    photo_ids: Sequence[str],
    todo: list[tuple[int, Image.Image]],
    out: list[NDArray[np.float32] | None],
) -> None:
    images = [view for _, im in todo for view in crops(im)]
    vectors = np.asarray(embedder.embed(images), np.float32).reshape(len(todo), len(VIEWS), -1)
    for (i, _), v in zip(todo, vectors, strict=True):
        out[i] = v
        buf = BytesIO()
        np.save(buf, v, allow_pickle=False)
        # A torn file after a power cut is read as missing and embedded again.
        write_atomic(folder / f"{photo_ids[i]}.npy", buf.getvalue(), fsync=False)


def _read(path: Path, dim: int) -> NDArray[np.float32] | None:
    try:
        v = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if v.shape != (len(VIEWS), dim) or v.dtype != np.float32 or not np.isfinite(v).all():
        return None
    return v  # type: ignore[no-any-return]
