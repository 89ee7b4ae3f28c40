"""``LiveIndex.search_batch``: the same answers as one ``search`` per vector."""

from __future__ import annotations

import numpy as np
import pytest

from shoplens.errors import BadParameter
from shoplens.indexer.catalog.types import SearchFilters
from shoplens.indexer.serving.live import LiveIndex
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
