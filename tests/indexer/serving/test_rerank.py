"""Geometric re-ranking of a studio catalog's short list (real OpenCV, real SQLite).

Two generated "packages" share their colours (a colour-thumbnail embedding can
hardly tell them apart) but carry different printed patterns; a shopper's photo
shows one of them turned and scaled on a grey shelf. Local features with RANSAC
must find the printed one and put it first.
"""

from __future__ import annotations

import json
from contextlib import closing
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from shoplens.config import Settings
from shoplens.indexer.catalog.photos import photo_path
from shoplens.indexer.catalog.types import Hit, ProductRecord, SearchFilters
from shoplens.indexer.ops.build import run_index
from shoplens.indexer.serving import rerank
from shoplens.indexer.serving.live import LiveIndex
from tests.indexer.helpers import HistEmbedder, write_catalog


def package(seed: int) -> Image.Image:
    """A 160 x 220 carton: one colour, a pattern of shapes and strokes printed on it."""
    rng = np.random.default_rng(seed)
    im = Image.new("RGB", (160, 220), (40, 120, 200))
    draw = ImageDraw.Draw(im)
    for _ in range(60):
        x, y = (int(v) for v in rng.integers(0, 150, 2))
        w, h = (int(v) for v in rng.integers(6, 30, 2))
        shade = int(rng.integers(0, 256))
        box = (x, y + 30, x + w, y + 30 + h)
        if rng.random() < 0.5:
            draw.rectangle(box, fill=(shade, shade, 255 - shade))
        else:
            draw.ellipse(box, outline=(255 - shade, shade, shade), width=3)
    return im


def studio(seed: int) -> Image.Image:
    """The carton on white, as a shop photographs it."""
    im = Image.new("RGB", (240, 280), (255, 255, 255))
    im.paste(package(seed), (40, 30))
    return im


def shelf_photo(seed: int) -> Image.Image:
    """The carton turned by 12 degrees, at 1.3x, on a grey shelf."""
    carton = (
        package(seed).convert("RGBA").rotate(12, expand=True, resample=Image.Resampling.BICUBIC)
    )
    carton = carton.resize((int(carton.width * 1.3), int(carton.height * 1.3)))
    scene = Image.new("RGB", (360, 360), (110, 110, 105))
    scene.paste(carton, (20, 10), carton)
    return scene


def hit(product_id: str, score: float) -> Hit:
    product = ProductRecord(product_id=product_id, title=product_id)
    return Hit(product=product, image_id=f"img-{product_id}", score=score)


def test_the_printed_match_is_verified_and_the_other_is_not() -> None:
    a = rerank.local_features(studio(1), studio=True)
    b = rerank.local_features(studio(2), studio=True)
    q = rerank.local_features(shelf_photo(1))
    # Only the carton's keypoints: the white around it gives none. (Points are
    # in the matching frame: the 240 x 280 photo scaled to MAX_SIDE; the carton
    # starts 40 px from the left.)
    left = 40 * rerank.MAX_SIDE / 280
    assert len(a) > 30 and float(a.points[:, 0].min()) >= left - 1
    assert rerank.inliers(q, a) >= 3 * rerank.MIN_INLIERS
    assert rerank.inliers(q, b) < rerank.MIN_INLIERS


def test_rerank_puts_the_geometric_match_first_and_keeps_scores_descending() -> None:
    features = {"b": rerank.local_features(studio(2), studio=True)}
    features["a"] = rerank.local_features(studio(1), studio=True)
    hits = [hit("b", 0.80), hit("a", 0.78), hit("c", 0.50)]
    ranked = rerank.rerank_hits(
        hits,
        shelf_photo(1),
        lambda h: features.get(h.product.product_id, rerank.LocalFeatures.empty()),
    )
    assert [h.product.product_id for h in ranked] == ["a", "b", "c"]
    assert ranked[0].score > 0.80 and ranked[1].score == 0.80
    assert [h.score for h in ranked] == sorted((h.score for h in ranked), reverse=True)
    assert all(-1.0 <= h.score <= 1.0 for h in ranked)


def _studio_catalog(root: Path, n: int) -> Path:
    (root / "img").mkdir(parents=True)
    lines = ["product_id,title,image"]
    for p in range(n):
        # PNG: a JPEG would be stored at the stand-in model's draft size (32 px).
        studio(p + 1).save(root / "img" / f"s{p}.png")
        lines.append(f"p{p},Package {p},img/s{p}.png")
    (root / "catalog.csv").write_text("\n".join(lines) + "\n")
    return root / "catalog.csv"


def test_a_studio_snapshot_records_its_pipeline_and_search_reranks(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    embedder = HistEmbedder()
    report = run_index(settings, _studio_catalog(tmp_path / "cat", 4), embedder=embedder)
    facts = json.loads((settings.snapshots_dir / report.snapshot_id / "facts.json").read_text())
    assert facts["pipeline"] == {"kind": "studio", "rerank": rerank.facts()}
    query = shelf_photo(3)  # product p2
    vector = embedder.embed([query])[0]
    with closing(LiveIndex.open(settings, embedder.name)) as live:
        plain = live.search(vector, 4, SearchFilters())
        ranked = live.search(vector, 4, SearchFilters(), image=query)
    # Same-coloured cartons: the thumbnails alone barely separate them.
    assert {h.product.product_id for h in plain} == {"p0", "p1", "p2", "p3"}
    assert ranked[0].product.product_id == "p2"
    by_id = {h.product.product_id: h.score for h in plain}
    assert ranked[0].score > by_id["p2"]  # the geometric bonus
    with closing(
        LiveIndex.open(settings.model_copy(update={"rerank": "off"}), embedder.name)
    ) as live:
        assert live.search(vector, 4, SearchFilters(), image=query) == plain
    assert [h.score for h in ranked[1:]] == sorted(
        (by_id[h.product.product_id] for h in ranked[1:]), reverse=True
    )


def test_a_catalog_that_learns_an_adaptation_keeps_the_plain_ranking(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    embedder = HistEmbedder()
    report = run_index(settings, write_catalog(tmp_path / "cat", 4, 3), embedder=embedder)
    facts = json.loads((settings.snapshots_dir / report.snapshot_id / "facts.json").read_text())
    assert facts["adaptation"]["kind"] == "lda"
    assert facts["pipeline"] == {"kind": "learnt"}
    photo = Image.open(tmp_path / "cat" / "img" / "p1_0.jpg")
    vector = embedder.embed([photo])[0]
    with closing(LiveIndex.open(settings, embedder.name)) as live:
        plain = live.search(vector, 3, SearchFilters())
        with_photo = live.search(vector, 3, SearchFilters(), image=photo)
    assert with_photo == plain


def test_catalog_features_are_ready_when_the_snapshot_loads(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    embedder = HistEmbedder()
    run_index(settings, _studio_catalog(tmp_path / "cat", 4), embedder=embedder)
    query = shelf_photo(3)  # product p2
    vector = embedder.embed([query])[0]
    with closing(LiveIndex.open(settings, embedder.name)) as live:
        shas = set(live._cur.sha_by_image_id.values())
        assert len(shas) == 4 and all(s in live.rerank_features for s in shas)
        # No search reads a catalog photo any more: with the stored photos gone,
        # the verification still finds the printed match.
        for sha in shas:
            photo_path(settings.data_dir, sha).unlink()
        ranked = live.search(vector, 4, SearchFilters(), image=query)
    assert ranked[0].product.product_id == "p2"
    with closing(
        LiveIndex.open(settings.model_copy(update={"rerank": "off"}), embedder.name)
    ) as live:
        assert not any(s in live.rerank_features for s in shas)  # off: nothing computed


def test_a_query_photo_has_its_features_started_ahead_only_where_search_reranks(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    embedder = HistEmbedder()
    run_index(settings, _studio_catalog(tmp_path / "cat", 4), embedder=embedder)
    query = shelf_photo(3)  # product p2
    vector = embedder.embed([query])[0]
    with closing(LiveIndex.open(settings, embedder.name)) as live:
        photo = live.query_photo(query)
        assert photo.ahead
        expected = rerank.local_features(query)
        assert np.array_equal(photo.features().points, expected.points)
        assert live.search(vector, 4, SearchFilters(), image=photo) == live.search(
            vector, 4, SearchFilters(), image=query
        )
    with closing(
        LiveIndex.open(settings.model_copy(update={"rerank": "off"}), embedder.name)
    ) as live:
        assert not live.query_photo(query).ahead


def test_the_short_list_counts_each_candidate_on_its_own() -> None:
    q = rerank.local_features(shelf_photo(1))
    cands = [rerank.local_features(studio(s), studio=True) for s in (2, 1, 3, 1)]
    one = rerank.LocalFeatures(cands[1].points[:1], cands[1].descriptors[:1])
    cands += [rerank.LocalFeatures.empty(), one]
    counts = rerank.inlier_counts(q, cands)
    # Each candidate gets its own nearest neighbours and ratio test: the printed
    # match (twice) verifies, the others and the degenerate ones do not.
    assert counts == [rerank.inlier_counts(q, [c])[0] for c in cands]
    assert counts[1] == counts[3] >= 3 * rerank.MIN_INLIERS
    assert counts[0] < rerank.MIN_INLIERS and counts[2] < rerank.MIN_INLIERS
    assert counts[4:] == [0, 0]
