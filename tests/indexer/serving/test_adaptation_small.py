"""A ten-photo catalog with the real default model (3168-d): the adaptation is fitted
in the photos' span, so its cost follows the catalog, not the model's dimension.

(It used to solve two 3168 x 3168 eigenproblems, about 30 s on a small CPU, for
any catalog of fewer than 32 photos.) No timing is asserted: what is checked is
that the fit took the span path, whose size shows in the snapshot's facts, and
that search still finds a catalog photo's own product.
"""

from __future__ import annotations

import io
import json
from contextlib import closing
from pathlib import Path

import pytest
from PIL import Image

from shoplens.config import Settings
from shoplens.indexer.catalog.types import SearchFilters
from shoplens.indexer.ops.build import run_index
from shoplens.indexer.serving.live import LiveIndex
from shoplens.models.base import ImageEmbedder
from tests.indexer.helpers import image_bytes, write_catalog


@pytest.fixture(scope="module")
def default_model() -> ImageEmbedder:
    from shoplens.models.registry import load_embedder

    return load_embedder(Settings())


def test_ten_photos_of_five_products_fit_in_their_span(
    tmp_path: Path, default_model: ImageEmbedder
) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    manifest = write_catalog(tmp_path / "cat", 5, 2)
    report = run_index(settings, manifest, embedder=default_model)
    assert (report.indexed, report.products) == (10, 5)
    facts = json.loads((settings.snapshots_dir / report.snapshot_id / "facts.json").read_text())
    ad = facts["adaptation"]
    assert ad["kind"] == "lda" and ad["dim_in"] == default_model.dim == 3168
    # Ten centred photos span nine dimensions; the default asks for 32.
    assert ad["dim_out"] == facts["index_dim"] == 9
    with closing(LiveIndex.open(settings, default_model.name)) as live:
        for p in range(5):
            photo = Image.open(io.BytesIO(image_bytes(p * 1000 + 1)))  # p{p}_1.jpg
            hit = live.search(default_model.embed([photo])[0], 1, SearchFilters())[0]
            assert hit.product.product_id == f"p{p}"
