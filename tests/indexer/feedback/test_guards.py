"""The learn-time outlier check and the near-duplicate check, on generated vectors."""

from __future__ import annotations

import numpy as np

from shoplens.indexer.feedback.guards import near_duplicate, outliers
from shoplens.indexer.feedback.store import new_search_id, search_id_time


def _world(seed: int = 0, products: int = 30, dim: int = 64) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(products, dim)).astype(np.float32)
    return centres, [f"p{i}" for i in range(products)]


def test_a_photo_of_one_product_confirmed_as_another_is_an_outlier() -> None:
    centres, names = _world()
    rng = np.random.default_rng(1)
    # Five honest shopper photos of each of the first twenty products ...
    honest = np.concatenate([centres[:20] + 0.4 * rng.normal(size=(20, 64))] * 5)
    honest_ids = names[:20] * 5
    # ... and a poisoner's two photos of p25 confirmed as p0.
    poison = centres[25][None, :] + 0.4 * rng.normal(size=(2, 64))
    shoppers = np.concatenate([honest, poison]).astype(np.float32)
    out = outliers(shoppers, honest_ids + ["p0"] * 2, rank=3)
    assert not out[:100].any()
    assert out[100:].all()


def test_products_with_too_few_shopper_photos_are_not_judged() -> None:
    centres, names = _world()
    # One photo each: nothing of their own product to compare with.
    assert not outliers(centres[:20], names[:20], rank=3).any()
    # Three products only: nothing to rank against.
    three = np.concatenate([centres[:3]] * 4)
    assert not outliers(three, names[:3] * 4, rank=3).any()


def test_near_duplicates() -> None:
    rng = np.random.default_rng(2)
    kept = rng.normal(size=(4, 32)).astype(np.float32)
    assert near_duplicate(kept[2] * 3 + 0.001, kept)
    assert not near_duplicate(rng.normal(size=32).astype(np.float32), kept)
    assert not near_duplicate(kept[0], np.zeros((0, 32), np.float32))


def test_a_search_id_carries_its_time() -> None:
    sid = new_search_id(1_700_000_000.5)
    assert search_id_time(sid) == 1_700_000_000.0
    for bad in ("", "s", "x12-ab", "s12", "szz-ab", "s12-", "s1-" + "a" * 80):
        assert search_id_time(bad) is None
