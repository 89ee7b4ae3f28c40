"""Shared pieces of the retrieval-quality study: labels, pooling, metric, splits."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from benchmarks.quality_features import read_rows

F32 = NDArray[np.float32]


def l2n(x: NDArray[np.floating]) -> F32:
    x = np.asarray(x, dtype=np.float32)
    out: F32 = (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)
    return out


@dataclass(frozen=True)
class Labels:
    catalog_products: list[str]
    catalog_images: list[str]
    query_products: list[str]

    @property
    def iconic(self) -> NDArray[np.bool_]:
        return np.array(["/iconic/" in p for p in self.catalog_images])


def load_labels(grocery: Path) -> Labels:
    cat = read_rows(grocery / "catalog.csv")
    qs = read_rows(grocery / "queries_val.csv")
    return Labels(
        [r["product_id"] for r in cat], [r["image"] for r in cat], [r["product_id"] for r in qs]
    )


# ---------------------------------------------------------------- pooling


def gem(fmap: NDArray[np.floating], p: float = 3.0) -> F32:
    f = np.maximum(fmap.astype(np.float32), 1e-6)
    out: F32 = np.power(np.power(f, p).mean(axis=(2, 3)), 1.0 / p).astype(np.float32)
    return out


def avg(fmap: NDArray[np.floating]) -> F32:
    out: F32 = np.maximum(fmap.astype(np.float32), 0).mean(axis=(2, 3)).astype(np.float32)
    return out


def rmac(fmap: NDArray[np.floating], levels: int = 3, p: float = 0.0) -> F32:
    """R-MAC: sum of L2-normalised max (or GeM p>0) pooled square regions, 40 % overlap."""
    f = np.maximum(fmap.astype(np.float32), 1e-6)
    _, _, h, w = f.shape
    out = np.zeros(f.shape[:2], np.float32)
    for lev in range(1, levels + 1):
        side = max(1, int(2 * min(h, w) / (lev + 1)))
        steps = lev
        ys = np.linspace(0, h - side, steps).round().astype(int) if steps > 1 else [(h - side) // 2]
        xs = np.linspace(0, w - side, steps).round().astype(int) if steps > 1 else [(w - side) // 2]
        for y in ys:
            for x in xs:
                reg = f[:, :, y : y + side, x : x + side]
                if p > 0:
                    v = np.power(np.power(reg, p).mean(axis=(2, 3)), 1 / p)
                else:
                    v = reg.max(axis=(2, 3))
                out += l2n(v)
    return out


# ---------------------------------------------------------------- metric


def per_product(sims: F32, codes: NDArray[np.int_], n: int, top: int = 1) -> F32:
    """``(n_q, n)`` product scores from image similarities ``(n_q, n_images)``:
    the mean of each product's ``top`` best images (``top=1``: its best image, the
    service's rule); ``codes`` are the images' product indices; -inf for a product
    without images."""
    scores = np.full((sims.shape[0], n), -np.inf, np.float32)
    for j in range(n):
        cols = sims[:, codes == j]
        if cols.shape[1]:
            scores[:, j] = -np.sort(-cols, axis=1)[:, :top].mean(axis=1)
    return scores


def product_scores(q: F32, c: F32, catalog_products: Sequence[str]) -> tuple[F32, list[str]]:
    """(n_q, n_products) max similarity over each product's images."""
    names = sorted(set(catalog_products))
    idx = {n: i for i, n in enumerate(names)}
    cp = np.array([idx[p] for p in catalog_products])
    return per_product(q @ c.T, cp, len(names)), names


def recall_from_scores(
    scores: F32, names: Sequence[str], query_products: Sequence[str], ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    order = np.argsort(-scores, axis=1)
    idx = {n: i for i, n in enumerate(names)}
    truth = np.array([idx.get(p, -1) for p in query_products])
    rank = np.array([np.where(order[i] == truth[i])[0][0] for i in range(len(truth))])
    return {f"R@{k}": float(np.mean(rank < k)) for k in ks}


def recall(
    q: F32,
    c: F32,
    catalog_products: Sequence[str],
    query_products: Sequence[str],
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, float]:
    scores, names = product_scores(l2n(q), l2n(c), catalog_products)
    return recall_from_scores(scores, names, query_products, ks)


# ---------------------------------------------------------------- catalog split


def _shot_number(path: str) -> int:
    m = re.search(r"_(\d+)\.\w+$", path)
    return int(m.group(1)) if m else -1


def catalog_split(labels: Labels, frac: float = 0.25) -> tuple[NDArray[np.int_], NDArray[np.int_]]:
    """(fit, held-out) catalog indices for choosing hyperparameters without queries.

    Held out per product: the iconic image plus the *last contiguous block* of
    its train photos (by shot number), so near-duplicate consecutive shots do
    not sit on both sides, which a random split would allow.
    """
    fit: list[int] = []
    held: list[int] = []
    by_product: dict[str, list[int]] = {}
    for i, p in enumerate(labels.catalog_products):
        by_product.setdefault(p, []).append(i)
    for ids in by_product.values():
        photos = sorted(
            (i for i in ids if "/iconic/" not in labels.catalog_images[i]),
            key=lambda i: _shot_number(labels.catalog_images[i]),
        )
        n_held = max(1, round(frac * len(photos)))
        held.extend(i for i in ids if "/iconic/" in labels.catalog_images[i])
        held.extend(photos[-n_held:])
        fit.extend(photos[:-n_held])
    return np.array(sorted(fit)), np.array(sorted(held))
