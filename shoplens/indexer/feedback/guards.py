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

    A photo's affinity to a product is the *median* cosine similarity (raw
    model space) to that product's photos, catalog and shoppers', itself left
    out. It is an outlier when its own product is not among the ``rank``
    products it has most affinity to (the candidates: the products whose
    centroids are nearest, plus its own). A median, unlike a centroid, is not
    dragged by a minority: a poisoner's few photos of product A confirmed as B
    stay far from most of B's photos, while honest photos pull together.
    """
    n = len(shopper_products)
    out = np.zeros(n, np.bool_)
    if n == 0 or len(set(catalog_products)) < OUTLIER_MIN_PRODUCTS:
        return out
    photos = l2_normalise(
        np.concatenate([np.asarray(catalog, np.float32), np.asarray(shoppers, np.float32)])
    )
    owner = [*catalog_products, *shopper_products]
    names = sorted(set(owner))
    index = {p: i for i, p in enumerate(names)}
    label = np.array([index[p] for p in owner], np.int64)
    members = [np.flatnonzero(label == j) for j in range(len(names))]
    centroids = np.zeros((len(names), photos.shape[1]), np.float32)
    np.add.at(centroids, label, photos)
    centroids = l2_normalise(centroids)
    first = len(catalog_products)
    for i in range(n):
        me = first + i
        q = photos[me]
        own = int(label[me])
        shortlist = np.argsort(-(centroids @ q))[: 2 * rank]
        affinity: dict[int, float] = {}
        for j in {*shortlist.tolist(), own}:
            rows = members[j][members[j] != me]
            if len(rows):
                affinity[j] = float(np.median(photos[rows] @ q))
        if own not in affinity:
            out[i] = True  # nothing else of its product to compare with
            continue
        out[i] = sum(a > affinity[own] for j, a in affinity.items() if j != own) >= rank
    return out
