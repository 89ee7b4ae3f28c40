"""``LiveIndex.search_batch``: the same answers as one ``search`` per vector."""

from __future__ import annotations

import numpy as np
import pytest

from shoplens.errors import BadParameter
from shoplens.indexer.catalog.types import Hit, SearchFilters
from shoplens.indexer.serving.live import LiveIndex
from shoplens.indexer.serving.query import centred as centred_queries
from tests.indexer.serving.test_live import _q, synth, synth_template

__all__ = ["synth", "synth_template"]  # fixtures shared with test_live


def test_search_batch_equals_one_search_per_vector(synth: LiveIndex) -> None:
    vectors = np.stack([_q(seed) for seed in range(6)])
    for filters in (SearchFilters(), SearchFilters(in_stock=True, min_score=-0.5)):
        batch = synth.search_batch(vectors, 7, filters)
        assert len(batch) == 6
        for v, hits in zip(vectors, batch, strict=True):
            single = synth.search(v, 7, filters)
            assert [h.product.product_id for h in hits] == [h.product.product_id for h in single]
            assert np.allclose([h.score for h in hits], [h.score for h in single], atol=1e-5)
    assert synth.search_batch(vectors[:0], 3, SearchFilters()) == []
    with pytest.raises(BadParameter):
        synth.search_batch(np.zeros((2, vectors.shape[1]), np.float32), 3, SearchFilters())


def test_centre_stops_a_shared_direction_winning_every_query(synth: LiveIndex) -> None:
    # Six crops of one "photo": each mostly what they all share (the hub product's
    # direction), less of its own product. Plain search ranks the hub first for all
    # six; centred, each ranks its own product above the hub. (Products with one
    # image, p % 3 == 0, so a product's vector is its image's.)
    ids = [f"p{i}" for i in range(12, 33, 3)]
    hub, own = synth.product_vector(ids[0]), [synth.product_vector(p) for p in ids[1:]]
    vectors = np.stack([0.8 * hub + 0.6 * v for v in own]).astype(np.float32)

    def rank(hits: list[Hit], product_id: str) -> int:
        found = [i for i, h in enumerate(hits) if h.product.product_id == product_id]
        return found[0] if found else len(hits)

    plain = synth.search_batch(vectors, 50, SearchFilters())
    assert [hits[0].product.product_id for hits in plain] == [ids[0]] * 6
    centred = synth.search_batch(vectors, 50, SearchFilters(), centre=0.5)
    for hits, product_id in zip(centred, ids[1:], strict=True):
        assert rank(hits, product_id) < rank(hits, ids[0]), product_id
    assert synth.search_batch(vectors, 50, SearchFilters(), centre=0.0) == plain


def test_centred_leaves_one_query_or_identical_queries_alone() -> None:
    one = np.stack([_q(1)])
    assert np.array_equal(centred_queries(one, 0.3), one)
    same = np.stack([_q(2)] * 3)
    assert np.allclose(centred_queries(same, 0.3), same, atol=1e-6)
    assert np.allclose(centred_queries(same, 1.0), same, atol=1e-6)  # nothing left: kept
    mixed = np.stack([_q(3), _q(4)])
    out = centred_queries(mixed, 0.3)
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)
    # The two queries end up further apart: their shared part is what was removed.
    assert float(out[0] @ out[1]) < float(mixed[0] @ mixed[1])
