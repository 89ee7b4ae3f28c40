"""Poisoning guards: what keeps one client from moving the catalog.

Feedback needs no token and many shops proxy every app call through one
backend, so thousands of honest confirmations can come from one address: no
guard here looks at who sent it. They look at the photo instead:

- at feedback time (:func:`keep_refusal`): one confirmed product per search
  (the store refuses a second), the product must be one that search showed,
  an identical upload is kept once whatever product it is confirmed for, a
  near-identical photo of the same product once, and a product takes at most
  :data:`MAX_NEW_PER_PRODUCT_PER_DAY` new photos a day;
- at learn time (:func:`outliers`): a shopper photo far from its product's
  other photos (catalog and shoppers', itself left out) is not learnt from.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from shoplens.models.base import l2_normalise

# An upload (by its bytes) becomes at most this many shopper photos: the same
# photo confirmed a thousand times, for any products, counts once.
MAX_PER_UPLOAD = 1
# Cosine similarity (raw model space) above which a photo is a re-upload of a
# kept photo of the same product (re-encoded, resized, a few pixels changed).
NEAR_DUPLICATE = 0.98
# New shopper photos a product may take per day: bounds what any burst can add
# before an admin or the learn-time outlier check sees it.
MAX_NEW_PER_PRODUCT_PER_DAY = 50
# At learn time a photo is kept when its product is among the products whose
# centroids are nearest to it (leave-one-out) ...
OUTLIER_RANK = 10
# ... and the catalog has at least this many products (below it every product
# is "near", so the check says nothing).
OUTLIER_MIN_PRODUCTS = 20


def near_duplicate(vector: NDArray[np.float32], kept: NDArray[np.float32]) -> bool:
    """Whether ``vector`` is (almost) the same photo as one of ``kept`` (raw vectors)."""
    if kept.size == 0:
        return False
    q = l2_normalise(np.asarray(vector, np.float32)[None, :])[0]
    return bool(float((l2_normalise(kept) @ q).max()) >= NEAR_DUPLICATE)


def outliers(
    catalog: NDArray[np.float32],
    catalog_products: Sequence[str],
    shoppers: NDArray[np.float32],
    shopper_products: Sequence[str],
    *,
    rank: int = OUTLIER_RANK,
) -> NDArray[np.bool_]:
    """Which shopper photos to leave out of learning (True: an outlier).

    Each shopper photo is compared with every product's centroid (mean of its
    normalised catalog and shopper photos, raw model space), its own product's
    computed without it. It is an outlier when its product is not among the
    ``rank`` nearest: a photo of one product confirmed as another (a mistake or
    a poisoner) sits near the photographed product instead. Honest photos pull
    their product's centroid towards where shoppers' photos are, so the check
    grows more certain as confirmations come in.
    """
    n = len(shopper_products)
    out = np.zeros(n, np.bool_)
    names = sorted(set(catalog_products) | set(shopper_products))
    if n == 0 or len(set(catalog_products)) < OUTLIER_MIN_PRODUCTS:
        return out
    index = {p: i for i, p in enumerate(names)}
    cat = l2_normalise(np.asarray(catalog, np.float32))
    shop = l2_normalise(np.asarray(shoppers, np.float32))
    sums = np.zeros((len(names), cat.shape[1]), np.float64)
    counts = np.zeros(len(names), np.int64)
    np.add.at(sums, [index[p] for p in catalog_products], cat)
    np.add.at(counts, [index[p] for p in catalog_products], 1)
    own = np.array([index[p] for p in shopper_products], np.int64)
    np.add.at(sums, own, shop)
    np.add.at(counts, own, 1)
    centroids = sums / np.maximum(counts, 1)[:, None]
    norms = np.linalg.norm(centroids, axis=1)
    sims = shop.astype(np.float64) @ centroids.T  # (n, products), not normalised yet
    for i in range(n):
        p = own[i]
        rest = sums[p] - shop[i]
        if counts[p] <= 1:
            out[i] = True  # nothing else of its product to compare with
            continue
        mine = rest / (counts[p] - 1)
        row = sims[i] / np.maximum(norms, 1e-12)
        row[p] = float(shop[i] @ mine) / max(float(np.linalg.norm(mine)), 1e-12)
        row[counts == 0] = -np.inf
        out[i] = int((row > row[p]).sum()) >= rank
    return out
