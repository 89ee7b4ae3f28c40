"""LiveIndex: snapshot + overlay, filters, dedup by product, persistence, reload."""

from __future__ import annotations

import hashlib
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from shoplens.config import Settings
from shoplens.errors import BadParameter, NotFound, SnapshotError
from shoplens.indexer.catalog.store import CatalogStore
from shoplens.indexer.catalog.types import NewImage, ProductRecord, SearchFilters
from shoplens.indexer.ops.build import run_index
from shoplens.indexer.serving.live import LiveIndex
from shoplens.indexer.serving.snapshot import CatalogVectors, build_snapshot, load_snapshot
from shoplens.indexer.serving.writer import CatalogWriter
from tests.indexer.helpers import HistEmbedder, image_bytes, write_catalog

DIM = 32
MODEL = "synthetic"


def _sha(i: int) -> str:
    return hashlib.sha256(f"img{i}".encode()).hexdigest()


def _synthetic(
    settings: Settings, n_products: int, seed: int = 0, clusters: int = 0
) -> dict[str, np.ndarray]:
    """A catalog of random unit vectors written through the real store and snapshot.

    With ``clusters`` the vectors lie around that many centres, like real
    embeddings (ANN indexes are only meaningful on structured data).
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, clusters), DIM)).astype(np.float32)
    vecs: dict[str, np.ndarray] = {}
    items = []
    emb = []
    img = 0
    for p in range(n_products):
        n_img = 1 + (p % 3)
        new = []
        for _ in range(n_img):
            v = rng.standard_normal(DIM).astype(np.float32)
            if clusters:
                v = centres[p % clusters] + 0.35 * v
            v /= np.linalg.norm(v)
            sha = _sha(img)
            img += 1
            vecs[sha] = v
            emb.append((sha, v))
            new.append(NewImage(f"img{img}.jpg", sha))
        attrs = {"rare": "1"} if p % 100 == 7 else {}
        product = ProductRecord(
            f"p{p}",
            title=f"P{p}",
            category="Rare" if p % 100 == 3 else ("A" if p % 2 else "B"),
            price=float(p % 50),
            in_stock=p % 4 != 0,
            attributes=attrs,
        )
        items.append((product, new, True))
    with CatalogStore(settings.db_path) as store:
        store.put_embeddings(MODEL, emb)
        store.upsert_products(items)
        build_snapshot(
            settings,
            CatalogVectors(*store.live_vectors(MODEL)),
            model=MODEL,
            dim=DIM,
            preprocess={},
        )
    return vecs


def _truth(settings: Settings, q: np.ndarray, k: int, keep: object) -> list[tuple[str, float]]:
    """Brute force: product score = max over its live images.

    In the published snapshot's search space: through its catalog adaptation
    when it has one (the default), like ``LiveIndex.search``.
    """
    snap = load_snapshot(settings, MODEL)
    q = snap.to_index_space(q)[0]
    with CatalogStore(settings.db_path) as store:
        _, products, images = store.load_catalog()
        raw = store.get_embeddings(MODEL, [im.sha256 for im in images])
    emb = dict(zip(raw, snap.to_index_space(np.stack(list(raw.values()))), strict=True))
    byid = {p.product_id: p for p in products}
    best: dict[str, float] = {}
    for im in images:
        p = byid[im.product_id]
        if not keep(p):  # type: ignore[operator]
            continue
        s = float(emb[im.sha256] @ q)
        best[p.product_id] = max(best.get(p.product_id, -2.0), s)
    return sorted(best.items(), key=lambda kv: -kv[1])[:k]


@pytest.fixture(scope="module")
def synth_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "data"
    _synthetic(Settings(data_dir=root), 3000)
    return root


@pytest.fixture
def synth(settings: Settings, synth_template: Path) -> Iterator[LiveIndex]:
    shutil.copytree(synth_template, settings.data_dir)
    live = LiveIndex.open(settings, MODEL)
    yield live
    live.close()


def _q(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed + 10_000).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def test_search_matches_brute_force(synth: LiveIndex, settings: Settings) -> None:
    assert synth.size == {"products": 3000, "images": 6000, "vectors": 6000}
    for seed in range(5):
        q = _q(seed)
        hits = synth.search(q, 10, SearchFilters())
        got = [(h.product.product_id, round(h.score, 5)) for h in hits]
        want = [(pid, round(s, 5)) for pid, s in _truth(settings, q, 10, lambda p: True)]
        assert got == want
        assert len({h.product.product_id for h in hits}) == 10


@pytest.mark.parametrize(
    ("filters", "keep"),
    [
        (SearchFilters(categories=("rare",)), lambda p: p.category == "Rare"),
        # Broad filters take the post-filter path (unfiltered search, widened).
        (SearchFilters(in_stock=True), lambda p: p.in_stock),
        (SearchFilters(exclude_products=("p1", "p2")), lambda p: p.product_id not in ("p1", "p2")),
        (SearchFilters(attributes={"rare": "1"}), lambda p: p.attributes.get("rare") == "1"),
        (
            SearchFilters(in_stock=True, min_price=10, max_price=12, categories=("A",)),
            lambda p: p.in_stock and 10 <= p.price <= 12 and p.category == "A",
        ),
    ],
)
def test_filters_return_k_exactly(
    synth: LiveIndex, settings: Settings, filters: SearchFilters, keep: object
) -> None:
    for seed in range(3):
        q = _q(seed)
        want = _truth(settings, q, 10, keep)
        assert len(want) == 10  # each filter matches ~1% of 3000 products (>= 10)
        hits = synth.search(q, 10, filters)
        assert [h.product.product_id for h in hits] == [pid for pid, _ in want]


def test_min_score_and_exclude(synth: LiveIndex) -> None:
    q = _q(1)
    top = synth.search(q, 5, SearchFilters())
    cut = top[2].score
    hits = synth.search(q, 5, SearchFilters(min_score=cut))
    assert [h.product.product_id for h in hits] == [h.product.product_id for h in top[:3]]
    ex = synth.search(q, 5, SearchFilters(exclude_products=(top[0].product.product_id,)))
    assert ex[0].product.product_id == top[1].product.product_id


def test_overlay_edits_searchable_at_once_and_survive_restart(
    settings: Settings, tmp_path: Path, hist: HistEmbedder
) -> None:
    run_index(settings, write_catalog(tmp_path / "cat", 30, 2), embedder=hist)
    live = LiveIndex.open(settings, hist.name)
    photo = image_bytes(424242)
    q = hist.embed_prepared(
        np.stack(
            [hist.prepare(__import__("PIL.Image").Image.open(__import__("io").BytesIO(photo)))]
        )
    )[0]
    v0 = live.version
    rec = CatalogWriter(live).upsert_product(
        ProductRecord("new-1", title="New", category="odd", price=3.0, currency="eur"),
        [photo],
        hist,
    )
    assert rec.currency == "EUR"
    assert live.version != v0
    hits = live.search(q, 3, SearchFilters())
    assert hits[0].product.product_id == "new-1" and hits[0].score > 0.99
    assert live.search(q, 1, SearchFilters(categories=("odd",)))[0].product.product_id == "new-1"
    img_id = hits[0].image_id
    assert Path(live.image_path(img_id)).read_bytes()[:2] == b"\xff\xd8"

    # Replace an existing product's photos: old photo gone from results.
    _, old_imgs = live.product("p5")
    CatalogWriter(live).upsert_product(ProductRecord("p5", title="Five"), [image_bytes(777)], hist)
    prod, imgs = live.product("p5")
    assert (
        prod.title == "Five"
        and len(imgs) == 1
        and imgs[0].image_id not in {i.image_id for i in old_imgs}
    )
    # Metadata-only update keeps photos.
    CatalogWriter(live).upsert_product(
        ProductRecord("p5", title="Five b", in_stock=False), [], hist
    )
    assert len(live.product("p5")[1]) == 1
    assert "p5" not in [
        h.product.product_id for h in live.search(q, 60, SearchFilters(in_stock=True))
    ]

    CatalogWriter(live).delete_product("p7")
    with pytest.raises(NotFound):
        live.product("p7")
    with pytest.raises(NotFound):
        CatalogWriter(live).delete_product("p7")
    assert "p7" not in [h.product.product_id for h in live.search(q, 100, SearchFilters())]
    v1 = live.version
    live.close()

    # Restart: same state from the store, same version.
    again = LiveIndex.open(settings, hist.name)
    try:
        assert again.version == v1
        assert again.search(q, 1, SearchFilters())[0].product.product_id == "new-1"
        assert again.product("p5")[0].title == "Five b"
        assert "p7" not in [h.product.product_id for h in again.search(q, 100, SearchFilters())]
        assert again.size["products"] == 30  # 30 + new-1 - p7
        # A full reindex folds the overlay into a snapshot (manifest is authoritative).
        r = run_index(settings, tmp_path / "cat" / "catalog.csv", embedder=hist)
        assert again.maybe_reload() is True
        assert again.version.startswith(r.snapshot_id)
        assert again.search(q, 1, SearchFilters())[0].product.product_id == "new-1"
        assert again.product("p7")[0].title == "Product 7"  # the manifest brought it back
    finally:
        again.close()


def test_similar_excludes_itself(synth: LiveIndex) -> None:
    hits = synth.similar("p10", 5, SearchFilters())
    assert len(hits) == 5 and "p10" not in [h.product.product_id for h in hits]
    with pytest.raises(NotFound):
        synth.similar("nope", 5, SearchFilters())


def test_bad_queries(synth: LiveIndex) -> None:
    with pytest.raises(BadParameter):
        synth.search(np.ones(DIM + 1, np.float32), 3, SearchFilters())
    with pytest.raises(BadParameter):
        synth.search(np.zeros(DIM, np.float32), 3, SearchFilters())
    with pytest.raises(NotFound):
        synth.image_path("0" * 20)


def test_no_snapshot(settings: Settings) -> None:
    with pytest.raises(SnapshotError, match="shoplens index"):
        LiveIndex.open(settings, MODEL)


def test_other_process_edits_are_picked_up(synth: LiveIndex, settings: Settings) -> None:
    other = LiveIndex.open(settings, MODEL)
    try:
        CatalogWriter(other).delete_product("p1")
        assert synth.maybe_reload() is True
        with pytest.raises(NotFound):
            synth.product("p1")
        assert synth.maybe_reload() is False
    finally:
        other.close()


def test_concurrent_search_and_writes(synth: LiveIndex) -> None:
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader(seed: int) -> None:
        try:
            while not stop.is_set():
                hits = synth.search(_q(seed), 10, SearchFilters(in_stock=True))
                assert len(hits) == 10
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for i in range(5):
        CatalogWriter(synth).delete_product(f"p{100 + i}")
        synth.maybe_reload()
    stop.set()
    for t in threads:
        t.join()
    assert not errors
    assert synth.size["products"] == 2995


def test_incremental_refresh_equals_full_rebuild(synth: LiveIndex, settings: Settings) -> None:
    """Random edits applied as deltas give the same results as a fresh open."""
    rng = np.random.default_rng(7)
    with CatalogStore(settings.db_path) as store:
        for step in range(6):
            emb = []
            items = []
            for j in range(5):
                pid = f"p{int(rng.integers(0, 3200))}"
                new = []
                for m in range(int(rng.integers(0, 3))):
                    v = rng.standard_normal(DIM).astype(np.float32)
                    sha = _sha(1_000_000 + step * 100 + j * 10 + m)
                    emb.append((sha, v / np.linalg.norm(v)))
                    new.append(NewImage("x.jpg", sha))
                if rng.random() < 0.3:  # re-attach a snapshot image to another product
                    new.append(NewImage("y.jpg", _sha(int(rng.integers(0, 6000)))))
                cat = "Rare" if rng.random() < 0.5 else "C"
                items.append((ProductRecord(pid, category=cat, price=5.0), new, True))
            store.put_embeddings(MODEL, emb)
            store.upsert_products(items)
            store.delete_products([f"p{int(rng.integers(0, 3000))}" for _ in range(3)])
            assert synth.maybe_reload() is True
    fresh = LiveIndex.open(settings, MODEL)
    try:
        assert synth.version == fresh.version
        assert synth.size == fresh.size
        for seed in range(4):
            for f in (SearchFilters(), SearchFilters(categories=("rare",), max_price=6)):
                a = synth.search(_q(seed), 10, f)
                b = fresh.search(_q(seed), 10, f)
                assert [(h.product.product_id, h.image_id) for h in a] == [
                    (h.product.product_id, h.image_id) for h in b
                ]
                want = _truth(
                    settings,
                    _q(seed),
                    10,
                    (lambda p: True)
                    if not f.categories
                    else (lambda p: p.category == "Rare" and p.price is not None and p.price <= 6),
                )
                assert [h.product.product_id for h in a] == [pid for pid, _ in want]
    finally:
        fresh.close()


def test_ann_snapshot_filters_return_k(tmp_path: Path) -> None:
    """Above exact_index_max the snapshot is an ANN index; filters still give k."""
    settings = Settings(data_dir=tmp_path / "ann", exact_index_max=1000)
    vecs = list(_synthetic(settings, 3000, clusters=60).values())
    live = LiveIndex.open(settings, MODEL)
    rng = np.random.default_rng(3)
    try:
        assert live.snapshot_facts["index"]["type"] != "flat-ip"
        agree = 0
        for seed in range(5):
            q = vecs[seed * 97] + 0.2 * rng.standard_normal(DIM).astype(np.float32)
            q /= np.linalg.norm(q)
            for f, keep in (
                (SearchFilters(), lambda p: True),
                (SearchFilters(categories=("rare",)), lambda p: p.category == "Rare"),
                (SearchFilters(in_stock=True), lambda p: p.in_stock),
            ):
                hits = live.search(q, 10, f)
                assert len(hits) == 10
                assert all(keep(h.product) for h in hits)
                want = {pid for pid, _ in _truth(settings, q, 10, keep)}
                agree += len(want & {h.product.product_id for h in hits})
        assert agree / (5 * 3 * 10) >= 0.8, agree  # recall@10 against brute force
    finally:
        live.close()
