"""Photo search on a studio catalog over HTTP: the short list is verified geometrically.

One studio photo per product, cartons of the same colour with different prints
(see tests/indexer/serving/test_rerank.py): the colour-thumbnail stand-in model
alone does not rank the photographed carton first; the answer does.
"""

from __future__ import annotations

import io
import time
from contextlib import closing
from pathlib import Path

import numpy as np
from PIL import Image
from starlette.testclient import TestClient

from shoplens.config import Settings
from shoplens.indexer.catalog.types import SearchFilters
from shoplens.indexer.ops.build import run_index
from shoplens.indexer.serving.live import LiveIndex
from shoplens.indexer.serving.query_domain import FOLDER
from shoplens.models.base import ImageEmbedder
from tests.indexer.serving.test_rerank import _studio_catalog, shelf_photo
from tests.service.conftest import AppFactory
from tests.service.helpers import synthetic_photo


def _jpeg(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def test_search_on_a_studio_catalog_answers_the_printed_match_first(
    tmp_path: Path, make_client: AppFactory, embedder: ImageEmbedder
) -> None:
    data_dir = tmp_path / "data"
    run_index(Settings(data_dir=data_dir), _studio_catalog(tmp_path / "cat", 4), embedder=embedder)
    photo = _jpeg(shelf_photo(3))  # product p2
    with closing(LiveIndex.open(Settings(data_dir=data_dir), embedder.name)) as live:
        vector = embedder.embed([Image.open(io.BytesIO(photo))])[0]
        plain = [h.product.product_id for h in live.search(vector, 4, SearchFilters())]
    assert plain[0] != "p2"  # what the global features alone answer
    with make_client(data_dir) as client:
        r = client.post("/v1/search", files={"image": ("shelf.jpg", photo, "image/jpeg")})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert results[0]["product_id"] == "p2"
    scores = [x["score"] for x in results]
    assert scores == sorted(scores, reverse=True) and all(-1 <= s <= 1 for s in scores)


def test_a_degenerate_photo_on_a_studio_catalog_still_answers(
    tmp_path: Path, make_client: AppFactory, embedder: ImageEmbedder
) -> None:
    data_dir = tmp_path / "data"
    run_index(Settings(data_dir=data_dir), _studio_catalog(tmp_path / "cat", 3), embedder=embedder)
    with make_client(data_dir) as client:
        for size in ((1, 1), (3, 900)):
            photo = _jpeg(Image.new("RGB", size, (40, 120, 200)))
            r = client.post("/v1/search", files={"image": ("x.jpg", photo, "image/jpeg")})
            assert r.status_code == 200, r.text
            assert len(r.json()["results"]) == 3


def _readyz_searches(client: TestClient, want: int) -> dict[str, object]:
    """``/readyz``'s query domain once the reload loop has saved ``want`` searches."""
    deadline = time.monotonic() + 10
    while True:
        domain: dict[str, object] = client.get("/readyz").json()["query_domain"]
        if domain["searches"] == want or time.monotonic() > deadline:
            return domain
        time.sleep(0.1)


def test_shoppers_photo_searches_feed_the_query_mean_and_nothing_else_does(
    tmp_path: Path, make_client: AppFactory, embedder: ImageEmbedder
) -> None:
    data_dir = tmp_path / "data"
    run_index(Settings(data_dir=data_dir), _studio_catalog(tmp_path / "cat", 4), embedder=embedder)
    photos = [_jpeg(synthetic_photo(40_000 + i)) for i in range(3)]
    with make_client(data_dir) as client:
        assert client.get("/readyz").json()["query_domain"] == {"searches": 0, "centring": False}
        for photo in photos + photos[:1] * 5:  # a burst of the first photo counts once
            r = client.post("/v1/search", files={"image": ("shop.jpg", photo, "image/jpeg")})
            assert r.status_code == 200, r.text
        # Word searches and "more like this" are not shoppers' photos.
        assert client.get("/v1/search", params={"q": "package"}).status_code == 200
        assert client.get("/v1/products/p1/similar").status_code == 200
        assert _readyz_searches(client, 3) == {"searches": 3, "centring": False}
        # The reload loop sets the gauge when it saves.
        deadline = time.monotonic() + 10
        while "shoplens_query_domain_searches 3.0" not in client.get("/metrics").text:
            assert time.monotonic() < deadline, "the gauge never showed the searches"
            time.sleep(0.1)
    saved = list((data_dir / FOLDER).rglob("*.npz"))
    assert len(saved) == 1
    with np.load(saved[0]) as f:
        assert float(f["count"]) == 3.0


def test_with_query_centring_off_no_search_is_kept(
    tmp_path: Path, make_client: AppFactory, embedder: ImageEmbedder
) -> None:
    data_dir = tmp_path / "data"
    run_index(Settings(data_dir=data_dir), _studio_catalog(tmp_path / "cat", 3), embedder=embedder)
    photo = _jpeg(shelf_photo(2))
    with make_client(data_dir, query_centring="off") as client:
        for _ in range(3):
            r = client.post("/v1/search", files={"image": ("shelf.jpg", photo, "image/jpeg")})
            assert r.status_code == 200, r.text
        time.sleep(0.5)  # two reload periods
        assert client.get("/readyz").json()["query_domain"] == {"searches": 0, "centring": False}
    assert not (data_dir / FOLDER).exists()
