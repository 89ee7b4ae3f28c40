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
  other shopper photos is not learnt from.
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
# At learn time a photo is left out when at least this many products' shopper
# photos (or a third of the products, if more) are more like it than its own
# product's others. Loose on purpose: on the grocery data (benchmarks/results/
# learn.md) honest shelf photos of look-alike products (apple varieties, juice
# flavours) trip a tighter rank, and each honest photo left out costs more
# recall than a few wrong ones do (the adaptation is a fit over hundreds) ...
OUTLIER_RANK = 10
# ... which needs at least this many other shopper photos of its product.
OUTLIER_MIN_PEERS = 2


def near_duplicate(vector: NDArray[np.float32], kept: NDArray[np.float32]) -> bool:
    """Whether ``vector`` is (almost) the same photo as one of ``kept`` (raw vectors)."""
    if kept.size == 0:
        return False
    q = l2_normalise(np.asarray(vector, np.float32)[None, :])[0]
    return bool(float((l2_normalise(kept) @ q).max()) >= NEAR_DUPLICATE)


def outliers(
    shoppers: NDArray[np.float32],
    shopper_products: Sequence[str],
    *,
    rank: int | None = None,
    min_peers: int = OUTLIER_MIN_PEERS,
) -> NDArray[np.bool_]:
    """Which shopper photos to leave out of learning (True: an outlier).

    A photo's affinity to a product is the *median* cosine similarity (raw
    model space) to that product's other shopper photos. It is an outlier when
    its product has at least ``min_peers`` other shopper photos and at least
    ``rank`` products (among those with ``min_peers`` photos) have a higher
    affinity (default: :data:`OUTLIER_RANK` or a third of them, if more).

    Compared with shoppers' photos only, not the catalog's: a studio photo on
    white is further from any shelf photo than shelf photos of other products
    are (on the grocery data most honest confirmations failed a check against
    the studio photo). A median, unlike a mean, is not dragged by
    a minority: a poisoner's few photos of product A confirmed as B stay far
    from most of B's photos. A product with fewer than ``min_peers`` shopper
    photos is not checked here: the feedback-time guards and review bound it.
    """
    n = len(shopper_products)
    out = np.zeros(n, np.bool_)
    if n == 0:
        return out
    photos = l2_normalise(np.asarray(shoppers, np.float32))
    names = sorted(set(shopper_products))
    label = np.array([names.index(p) for p in shopper_products], np.int64)
    members = [np.flatnonzero(label == j) for j in range(len(names))]
    rich = [j for j, m in enumerate(members) if len(m) >= min_peers]
    if rank is None:
        rank = max(OUTLIER_RANK, len(rich) // 3)
    if len(rich) <= rank:
        return out  # too few products to rank against: every one is "near"
    sims = photos @ photos.T
    for i in range(n):
        own = int(label[i])
        peers = members[own][members[own] != i]
        if len(peers) < min_peers:
            continue
        mine = float(np.median(sims[i, peers]))
        higher = 0
        for j in rich:
            if j != own and float(np.median(sims[i, members[j]])) > mine:
                higher += 1
                if higher >= rank:
                    out[i] = True
                    break
    return out
