"""Catalog adaptation in snapshots and search (real SQLite, FAISS, indexer; generated photos).

The catalog: products that differ a little (a shared 4x4 colour template plus a
small per-product pattern), photographed under strong lighting changes
(contrast, brightness, colour cast) that have nothing to do with the product.
That is what the LDA adaptation learns to ignore from the catalog's own ids.
"""

from __future__ import annotations

import csv
import io
import json
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from shoplens.config import Settings
from shoplens.errors import SnapshotError
from shoplens.indexer.catalog.store import CatalogStore
from shoplens.indexer.catalog.types import ProductRecord, SearchFilters
from shoplens.indexer.ops.build import run_index
from shoplens.indexer.serving.live import LiveIndex
from shoplens.indexer.serving.snapshot import load_snapshot
from shoplens.indexer.serving.writer import CatalogWriter
from tests.indexer.helpers import GRID, HistEmbedder

_TEMPLATE = np.random.default_rng(12345).uniform(60, 190, size=(GRID, GRID, 3))


def _pattern(product: int) -> np.ndarray:
    rng = np.random.default_rng(50_000 + product)
    out: np.ndarray = _TEMPLATE + rng.normal(0.0, 28.0, size=(GRID, GRID, 3))
    return out


def _photo(product: int, shot: int, *, strength: float = 1.0) -> bytes:
    """One photo of ``product`` under lighting ``shot`` (deterministic), as PNG bytes."""
    rng = np.random.default_rng(1_000_000 + product * 1000 + shot)
    contrast = 1.0 + strength * rng.uniform(-0.35, 0.35)
    brightness = strength * rng.uniform(-45, 45)
    cast = strength * rng.uniform(-35, 35, size=3)
    noise = rng.normal(0.0, 6.0, size=(GRID, GRID, 3))
    px = (_pattern(product) - 128.0) * contrast + 128.0 + brightness + cast + noise
    img = Image.fromarray(np.clip(px, 0, 255).astype(np.uint8), "RGB")
    buf = io.BytesIO()
    img.resize((48, 48), Image.Resampling.NEAREST).save(buf, format="PNG")
    return buf.getvalue()


def _catalog(root: Path, n_products: int, shots: int, *, first: int = 0) -> Path:
    (root / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for p in range(first, first + n_products):
        for s in range(shots):
            name = f"img/p{p}_{s}.png"
            (root / name).write_bytes(_photo(p, s))
            rows.append({"product_id": f"p{p}", "image": name, "title": f"Product {p}"})
    path = root / "catalog.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def _query(hist: HistEmbedder, product: int, shot: int) -> np.ndarray:
    """A held-out photo (shot numbers >= 500 never appear in a catalog)."""
    img = Image.open(io.BytesIO(_photo(product, 500 + shot, strength=1.2)))
    vec: np.ndarray = hist.embed([img])[0]
    return vec


def _hits_at_1(live: LiveIndex, hist: HistEmbedder, n_products: int) -> int:
    hits = 0
    for p in range(n_products):
        for s in range(3):
            found = live.search(_query(hist, p, s), 5, SearchFilters())
            assert all(-1.0 <= h.score <= 1.0 for h in found)
            hits += found[0].product.product_id == f"p{p}"
    return hits


N_PRODUCTS = 30
SHOTS = 6


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _catalog(tmp_path_factory.mktemp("adapt-cat"), N_PRODUCTS, SHOTS)


def test_snapshot_records_adaptation_and_search_improves(
    tmp_path: Path, manifest: Path, hist: HistEmbedder
) -> None:
    adapted = Settings(data_dir=tmp_path / "lda")
    plain = Settings(data_dir=tmp_path / "plain", adaptation="none")
    assert adapted.adaptation == "lda"
    report = run_index(adapted, manifest, embedder=hist)
    run_index(plain, manifest, embedder=hist)

    snap_dir = adapted.snapshots_dir / report.snapshot_id
    facts = json.loads((snap_dir / "facts.json").read_text())
    ad = facts["adaptation"]
    assert ad["kind"] == "lda" and ad["dim_in"] == hist.dim
    assert (ad["n_images"], ad["n_products"]) == (N_PRODUCTS * SHOTS, N_PRODUCTS)
    assert ad["fit_seconds"] >= 0 and ad["dim_out"] == facts["index_dim"]
    assert facts["dim"] == hist.dim and facts["index"]["dim"] == ad["dim_out"]
    assert "adaptation_reason" not in facts
    adapt_files = {n for n in facts["files"] if n.startswith("adapt/")}
    assert adapt_files == {
        "adapt/adaptation.json",
        "adapt/adaptation_mean.npy",
        "adapt/adaptation_matrix.npy",
    }

    plain_facts = load_snapshot(plain, hist.name).facts
    assert plain_facts["adaptation"] is None and "turned off" in plain_facts["adaptation_reason"]
    assert plain_facts["index_dim"] == hist.dim
    assert not any(n.startswith("adapt/") for n in plain_facts["files"])

    with (
        closing(LiveIndex.open(adapted, hist.name)) as live,
        closing(LiveIndex.open(plain, hist.name)) as base,
    ):
        assert live.dim == hist.dim and live.index_dim == ad["dim_out"]
        assert live.size == base.size == {"products": 30, "images": 180, "vectors": 180}
        with_lda = _hits_at_1(live, hist, N_PRODUCTS)
        without = _hits_at_1(base, hist, N_PRODUCTS)
        # A catalog photo itself is found, in both spaces.
        img = Image.open(io.BytesIO(_photo(3, 1)))
        assert live.search(hist.embed([img])[0], 1, SearchFilters())[0].product.product_id == "p3"
    assert with_lda >= without, (with_lda, without)
    assert with_lda >= 0.8 * 3 * N_PRODUCTS, with_lda


def test_environment_switch_turns_it_off(
    tmp_path: Path, manifest: Path, hist: HistEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOPLENS_ADAPTATION", "none")
    settings = Settings(data_dir=tmp_path / "data")
    assert settings.adaptation == "none"
    run_index(settings, manifest, embedder=hist)
    snap = load_snapshot(settings, hist.name)
    assert snap.adaptation is None and snap.facts["adaptation"] is None
    assert snap.index_dim == snap.dim == hist.dim
    assert not (snap.path / "adapt").exists()


def test_one_photo_per_product_falls_back(tmp_path: Path, hist: HistEmbedder) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    manifest = _catalog(tmp_path / "cat", 12, 1)
    run_index(settings, manifest, embedder=hist)
    snap = load_snapshot(settings, hist.name)
    assert snap.adaptation is None and snap.facts["adaptation"] is None
    assert "too few photos per product" in snap.facts["adaptation_reason"]
    with closing(LiveIndex.open(settings, hist.name)) as live:
        assert live.index_dim == live.dim == hist.dim
        for p in (0, 5, 11):
            img = Image.open(io.BytesIO(_photo(p, 0)))
            hits = live.search(hist.embed([img])[0], 3, SearchFilters())
            assert hits[0].product.product_id == f"p{p}" and hits[0].score == pytest.approx(1.0)


def test_upload_search_similar_restart_and_new_snapshot(
    tmp_path: Path, manifest: Path, hist: HistEmbedder
) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    run_index(settings, manifest, embedder=hist)
    new_p = 900  # a product the adaptation was not fitted on
    photos = [_photo(new_p, s) for s in range(4)]
    with closing(LiveIndex.open(settings, hist.name)) as live:
        first = load_snapshot(settings, hist.name)
        assert first.adaptation is not None
        CatalogWriter(live).upsert_product(ProductRecord("p900", title="New"), photos, hist)
        hits = live.search(_query(hist, new_p, 0), 3, SearchFilters())
        assert hits[0].product.product_id == "p900"
        assert live.size["products"] == N_PRODUCTS + 1
        # similar(): adapted space, itself excluded; product_vector: model space.
        sim = live.similar("p900", 5, SearchFilters())
        assert len(sim) == 5 and "p900" not in {h.product.product_id for h in sim}
        pv = live.product_vector("p900")
        assert pv.shape == (hist.dim,) and np.linalg.norm(pv) == pytest.approx(1.0, abs=1e-5)
        assert live.search(pv, 1, SearchFilters())[0].product.product_id == "p900"
        assert live.search(live.product_vector("p7"), 1, SearchFilters())[0].product.product_id == (
            "p7"
        )

    # Restart: the upload is still searchable through the snapshot's adaptation.
    with closing(LiveIndex.open(settings, hist.name)) as live:
        assert live.search(_query(hist, new_p, 1), 1, SearchFilters())[0].product.product_id == (
            "p900"
        )
        # A new snapshot (more products: a different adaptation) is swapped in;
        # an upload made after it sits in the overlay, projected with the NEW one.
        bigger = _catalog(tmp_path / "cat2", 10, SHOTS, first=N_PRODUCTS)
        second = run_index(settings, bigger, embedder=hist)
        with closing(LiveIndex.open(settings, hist.name)) as writer:
            CatalogWriter(writer).upsert_product(
                ProductRecord("p901", title="Newer"), [_photo(901, s) for s in range(3)], hist
            )
        assert live.maybe_reload() and live.snapshot_id == second.snapshot_id
        snap = load_snapshot(settings, hist.name)
        assert snap.adaptation is not None
        assert snap.facts["adaptation"]["n_products"] == N_PRODUCTS + 1 + 10
        with CatalogStore(settings.db_path) as store:
            found = store.get_product("p901")
            assert found is not None
            raw = store.get_embeddings(hist.name, [im.sha256 for im in found[1]])
        state = live._cur  # the overlay holds exactly the new adaptation's vectors
        assert state.ov_x.shape == (3, snap.index_dim)
        want = snap.to_index_space(np.stack([raw[im.sha256] for im in found[1]]))
        got = {int(v): x for v, x in zip(state.ov_vids, state.ov_x, strict=True)}
        for im, w in zip(found[1], want, strict=True):
            np.testing.assert_allclose(got[im.vid], w, atol=1e-5)
        for p in (new_p, 901, N_PRODUCTS + 4):
            hits = live.search(_query(hist, p, 2), 3, SearchFilters())
            assert hits[0].product.product_id == f"p{p}"


@pytest.mark.parametrize(
    "name", ["adaptation_matrix.npy", "adaptation_mean.npy", "adaptation.json"]
)
def test_corrupt_adaptation_is_refused(
    tmp_path: Path, manifest: Path, hist: HistEmbedder, name: str
) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    run_index(settings, manifest, embedder=hist)
    snap = load_snapshot(settings, hist.name)
    target = snap.path / "adapt" / name
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x55
    target.write_bytes(bytes(data))
    with pytest.raises(SnapshotError, match="adapt"):
        load_snapshot(settings, hist.name)
    with pytest.raises(SnapshotError):
        LiveIndex.open(settings, hist.name)
    target.unlink()
    with pytest.raises(SnapshotError, match="missing"):
        load_snapshot(settings, hist.name)


def test_multilayer_model_falls_back_to_its_head_with_one_photo_per_product(
    tmp_path: Path,
) -> None:
    """Nothing to learn from: a multi-layer descriptor keeps its 1280 head dims
    (they generalise from one studio photo); other models keep raw vectors."""
    from shoplens.indexer.serving.adaptation import fit_for_catalog
    from shoplens.models.effnet import head_dims

    def _fit(settings: Settings, vectors: np.ndarray, pids: list[str], *, model: str) -> Any:
        return fit_for_catalog(
            settings.adaptation, vectors, pids, head_dims=head_dims(model), previous=None
        )

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(6, 1584)).astype(np.float32)
    pids = [f"p{i}" for i in range(6)]
    settings = Settings(data_dir=tmp_path)
    head, facts, reason = _fit(settings, vectors, pids, model="effnet-lite0-ml-int8")
    assert head is not None and head.kind == "head" and head.dim_out == 1280
    assert facts is not None and "too few photos" in facts["fallback_because"]
    assert reason is None
    plain, facts, reason = _fit(settings, vectors[:, :1280], pids, model="effnet-lite0")
    assert plain is None and facts is None and reason is not None
    off = Settings(data_dir=tmp_path, adaptation="none")
    assert _fit(off, vectors, pids, model="effnet-lite0-ml")[0] is None
    # The Lite0 + Lite1 ensemble (the default) keeps both heads: its leading 2 x 1280 dims.
    both = rng.normal(size=(6, 3168)).astype(np.float32)
    heads, _, _ = _fit(settings, both, pids, model="effnet-lite0-lite1-ml-int8")
    assert heads is not None and heads.kind == "head" and heads.dim_out == 2560
    expected = both[:, :2560] / np.linalg.norm(both[:, :2560], axis=1, keepdims=True)
    assert np.allclose(heads.apply(both), expected, atol=1e-5)
