"""Query centring on the shop's own searches (serving/query_domain.py): the real
default model, real snapshots, real files shared by two processes' worth of state.
"""

from __future__ import annotations

import json
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image

from shoplens.config import Settings
from shoplens.indexer.catalog.types import Hit, SearchFilters
from shoplens.indexer.ops.build import run_index
from shoplens.indexer.serving import query_domain
from shoplens.indexer.serving.live import LiveIndex
from shoplens.indexer.serving.query_domain import FOLDER, MIN_SEARCHES, QueryDomain
from shoplens.models.base import ImageEmbedder
from tests.indexer.helpers import write_catalog
from tests.indexer.serving.shelf_scenes import shopper_photos, studio_catalog

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


Shopper = tuple[str, Image.Image, NDArray[np.float32]]


@pytest.fixture(scope="module")
def shoppers(real_embedder: ImageEmbedder) -> list[Shopper]:
    """36 shoppers' photos (6 cartons on 6 shelves) and their vectors, embedded once."""
    photos = shopper_photos(6)
    vectors = real_embedder.embed([im for _, im in photos])
    return [(p, im, v) for (p, im), v in zip(photos, vectors, strict=True)]


def _hits(live: LiveIndex, photos: list[Shopper], observe: bool = False) -> list[list[Hit]]:
    return [live.search(v, 3, SearchFilters(), image=im, observe=observe) for _, im, v in photos]


def _first(live: LiveIndex, photos: list[Shopper], observe: bool = False) -> list[str]:
    return [hits[0].product.product_id for hits in _hits(live, photos, observe)]


def _accuracy(answers: list[str], photos: list[Shopper]) -> float:
    return float(np.mean([a == p for a, (p, _, _) in zip(answers, photos, strict=True)]))


@pytest.fixture
def shelf_catalog(tmp_path: Path, embedder: ImageEmbedder) -> Settings:
    settings = Settings(data_dir=tmp_path / "data", rerank="off")
    run_index(settings, studio_catalog(tmp_path / "cat"), embedder=embedder)
    return settings


def test_shoppers_searches_centre_later_ones_and_lift_the_right_answer(
    shelf_catalog: Settings, embedder: ImageEmbedder, shoppers: list[Shopper]
) -> None:
    photos = shoppers  # 36 searches: past MIN_SEARCHES
    assert len(photos) >= MIN_SEARCHES
    with closing(LiveIndex.open(shelf_catalog, embedder.name)) as live:
        before = _first(live, photos)
        assert live.query_domain() == {"space": "head-2560", "searches": 0, "centring": False}
        _first(live, photos, observe=True)  # the shop's shoppers search
        assert live.query_domain()["centring"] is True
        after = _first(live, photos)
    # The shelf pulls uncentred photos to the wooden crate; centred, the cartons win.
    assert before.count("crate") >= 5
    assert _accuracy(before, photos) <= 0.5
    assert _accuracy(after, photos) >= 0.8
    assert after.count("crate") <= 1 < before.count("crate")
    # Saved when the index closed: another process (a restart, a replica) centres too.
    saved = shelf_catalog.data_dir / FOLDER / embedder.name / "head-2560.npz"
    with np.load(saved) as f:
        assert set(f.files) == {"sum", "count"}  # an aggregate: no single search kept
        assert float(f["count"]) == len(photos)
    with closing(LiveIndex.open(shelf_catalog, embedder.name)) as again:
        assert again.query_domain()["searches"] == len(photos)
        assert _first(again, photos) == after


def test_below_the_minimum_and_without_observing_nothing_changes(
    shelf_catalog: Settings, embedder: ImageEmbedder, shoppers: list[Shopper]
) -> None:
    photos = shoppers
    with closing(LiveIndex.open(shelf_catalog, embedder.name)) as live:
        before = _first(live, photos)
        _first(live, photos[: MIN_SEARCHES - 1], observe=True)
        assert live.query_domain()["centring"] is False
        assert _first(live, photos) == before
        # Searches without observe (an operator's CLI search) are not counted.
        _first(live, photos)
        assert live.query_domain()["searches"] == MIN_SEARCHES - 1


def test_turned_off_it_neither_keeps_nor_uses_anything(
    shelf_catalog: Settings, embedder: ImageEmbedder, shoppers: list[Shopper]
) -> None:
    off = shelf_catalog.model_copy(update={"query_centring": "off"})
    photos = shoppers
    with closing(LiveIndex.open(off, embedder.name)) as live:
        before = _first(live, photos)
        _first(live, photos, observe=True)
        assert live.query_domain()["centring"] is False
        assert _first(live, photos) == before
    assert not (shelf_catalog.data_dir / FOLDER).exists()


def test_a_catalog_that_learnt_an_adaptation_is_not_centred(
    tmp_path: Path, embedder: ImageEmbedder, shoppers: list[Shopper]
) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    report = run_index(settings, write_catalog(tmp_path / "cat", 4, 3), embedder=embedder)
    facts = json.loads((settings.snapshots_dir / report.snapshot_id / "facts.json").read_text())
    assert facts["pipeline"]["kind"] == "learnt"
    with closing(LiveIndex.open(settings, embedder.name)) as live:
        before = _hits(live, shoppers)
        _hits(live, shoppers, observe=True)
        assert live.query_domain() == {"space": None, "searches": 0, "centring": False}
        after = _hits(live, shoppers)
    assert after == before
    assert not (settings.data_dir / FOLDER).exists()


# ---------------------------------------------------------------- the shared file


def _unit(rng: np.random.Generator, d: int = 8) -> NDArray[np.float32]:
    v = rng.normal(size=d).astype(np.float32)
    return v / np.linalg.norm(v)


def test_processes_sharing_a_data_dir_add_up_their_searches(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    a, b = QueryDomain(tmp_path, "m"), QueryDomain(tmp_path, "m")
    va = [_unit(rng) for _ in range(20)]
    vb = [_unit(rng) for _ in range(15)]
    for v in va:
        a.observe("s-8", v)
    for v in vb:
        b.observe("s-8", v)
    a.sync()
    b.sync()
    a.sync()  # a reads what b added
    assert a.searches("s-8") == b.searches("s-8") == 35
    q = _unit(rng)
    expected = q - np.mean(va + vb, axis=0)
    expected /= np.linalg.norm(expected)
    np.testing.assert_allclose(a.centre("s-8", q), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b.centre("s-8", q), expected, rtol=1e-5, atol=1e-6)


def test_past_the_cap_old_searches_fade_and_the_mean_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(query_domain, "MAX_WEIGHT", 40.0)
    rng = np.random.default_rng(1)
    d = QueryDomain(tmp_path, "m")
    old = [_unit(rng) for _ in range(40)]
    for v in old:
        assert d.observe("s-8", v)
    d.sync()
    new = [_unit(rng) for _ in range(40)]
    for v in new:
        assert d.observe("s-8", v)
    d.sync()
    assert d.searches("s-8") == 40.0  # capped
    with np.load(tmp_path / FOLDER / "m" / "s-8.npz") as f:
        mean = f["sum"] / float(f["count"])
    np.testing.assert_allclose(mean, np.mean(old + new, axis=0), rtol=1e-5, atol=1e-7)


def test_a_corrupt_file_is_started_again_and_searches_are_not_centred_from_it(
    tmp_path: Path,
) -> None:
    folder = tmp_path / FOLDER / "m"
    folder.mkdir(parents=True)
    (folder / "s-8.npz").write_bytes(b"not a numpy file")
    d = QueryDomain(tmp_path, "m")
    q = _unit(np.random.default_rng(2))
    assert d.searches("s-8") == 0
    assert d.centre("s-8", q) is q
    d.observe("s-8", q)
    d.sync()  # written again from what this process saw
    with np.load(folder / "s-8.npz") as f:
        assert float(f["count"]) == 1.0


def test_a_model_name_with_a_colon_is_kept_in_a_portable_folder(tmp_path: Path) -> None:
    d = QueryDomain(tmp_path, "open_clip:ViT-B-32")
    d.observe("s-8", _unit(np.random.default_rng(5)))
    d.sync()
    assert [
        p.relative_to(tmp_path / FOLDER).as_posix() for p in (tmp_path / FOLDER).rglob("*.npz")
    ] == ["open_clip_ViT-B-32/s-8.npz"]
    assert QueryDomain(tmp_path, "open_clip:ViT-B-32").searches("s-8") == 1.0


def test_a_vector_of_another_dimension_is_never_mixed_in(tmp_path: Path) -> None:
    d = QueryDomain(tmp_path, "m")
    rng = np.random.default_rng(3)
    for _ in range(MIN_SEARCHES):
        d.observe("s-8", _unit(rng))
    d.observe("s-8", _unit(rng, 5))
    assert d.searches("s-8") == MIN_SEARCHES
    q5 = _unit(rng, 5)
    assert d.centre("s-8", q5) is q5


def test_a_burst_of_one_photo_counts_once(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    d = QueryDomain(tmp_path, "m")
    flood = _unit(rng, 64)
    assert d.observe("s-64", flood) is True
    for _ in range(200):  # the same photo again, and re-encoded (a little noise)
        noisy = flood + rng.normal(scale=0.01, size=64).astype(np.float32)
        assert d.observe("s-64", flood) is False
        assert d.observe("s-64", noisy) is False
    distinct = [_unit(rng, 64) for _ in range(40)]
    assert all(d.observe("s-64", v) for v in distinct)
    assert d.searches("s-64") == 41
