"""run_index end to end: real SQLite, real FAISS, real files, generated images."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shoplens.config import Settings
from shoplens.errors import Conflict, ManifestError, ModelMismatch, SnapshotError
from shoplens.indexer.catalog.photos import photo_path
from shoplens.indexer.catalog.store import CatalogStore
from shoplens.indexer.catalog.types import ProductRecord, SearchFilters
from shoplens.indexer.ops.build import run_index, run_lock
from shoplens.indexer.serving.live import LiveIndex
from shoplens.indexer.serving.snapshot import current_id, load_snapshot
from shoplens.indexer.serving.writer import CatalogWriter
from shoplens.models.base import ImageEmbedder
from shoplens.models.decode import decode_image
from tests.indexer.helpers import HistEmbedder, image_bytes, write_catalog


def test_first_run_then_incremental(tmp_path: Path, settings: Settings, hist: HistEmbedder) -> None:
    manifest = write_catalog(tmp_path / "cat", 20, 3)
    r1 = run_index(settings, manifest, embedder=hist)
    assert (r1.indexed, r1.unchanged, r1.rejected, r1.removed) == (60, 0, 0, 0)
    assert r1.products == 20 and r1.vectors == 60
    assert r1.summary_line().startswith("indexed 60, unchanged 0, rejected 0, removed 0")

    r2 = run_index(settings, manifest, embedder=hist)
    assert (r2.indexed, r2.unchanged, r2.rejected, r2.removed) == (0, 60, 0, 0)
    assert r2.snapshot_id != r1.snapshot_id

    # Touching a file (new mtime) re-reads it but does not re-embed the same bytes.
    img = tmp_path / "cat" / "img" / "p0_0.jpg"
    os.utime(img, ns=(1, 1))
    r3 = run_index(settings, manifest, embedder=hist)
    assert (r3.indexed, r3.unchanged) == (0, 60)

    # Changed bytes: exactly that image is embedded again.
    img.write_bytes(image_bytes(999_999))
    r4 = run_index(settings, manifest, embedder=hist)
    assert (r4.indexed, r4.unchanged) == (1, 59)

    with CatalogStore(settings.db_path) as store:
        assert store.count_embeddings(hist.name) == 61
        assert store.counts() == {"products": 20, "images": 60}

    # Stored photos are re-encoded JPEGs under images/<sha[:2]>/<sha>.jpg.
    with CatalogStore(settings.db_path) as store:
        found = store.get_product("p0")
    assert found is not None
    for im in found[1]:
        assert photo_path(settings.data_dir, im.sha256).read_bytes()[:3] == b"\xff\xd8\xff"
        assert im.image_id == im.sha256[:20]

    report = json.loads((settings.data_dir / "last_run.json").read_text())
    assert report["snapshot_id"] == r4.snapshot_id and report["indexed"] == 1
    snap_dir = settings.snapshots_dir / r4.snapshot_id
    facts = json.loads((snap_dir / "facts.json").read_text())
    assert facts["model"] == hist.name and facts["dim"] == hist.dim
    assert facts["counts"] == {"vectors": 60, "images": 60, "products": 20}
    assert facts["preprocess"]["resize"] == 32
    assert set(facts["files"]) >= {"idmap.json"}
    assert (snap_dir / "run_report.json").is_file()


def test_keeps_two_previous_snapshots(
    tmp_path: Path, settings: Settings, hist: HistEmbedder
) -> None:
    manifest = write_catalog(tmp_path / "cat", 3, 1)
    ids = [run_index(settings, manifest, embedder=hist).snapshot_id for _ in range(5)]
    left = sorted(p.name for p in settings.snapshots_dir.iterdir() if p.is_dir())
    assert left == ids[-3:]
    assert current_id(settings) == ids[-1]


def test_prune_and_rejects(tmp_path: Path, settings: Settings, hist: HistEmbedder) -> None:
    root = tmp_path / "cat"
    full = write_catalog(root, 10, 2)
    run_index(settings, full, embedder=hist)

    lines = full.read_text().splitlines()
    # Keep products p0..p4; p5's first image goes missing; add a remote and a bad row.
    kept = [lines[0]] + [
        ln for ln in lines[1:] if ln.split(",")[0] in {"p0", "p1", "p2", "p3", "p4", "p5"}
    ]
    small = root / "small.csv"
    kept.append("p6,https://example.com/x.jpg,Remote,even,1,EUR,yes")
    kept.append(",img/p0_0.jpg,No id,even,1,EUR,yes")
    small.write_text("\n".join(kept) + "\n")
    (root / "img" / "p5_0.jpg").unlink()
    (root / "img" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with open(small, "a") as f:
        f.write("p4,img/broken.jpg,Broken,even,1,EUR,yes\n")

    r = run_index(settings, small, embedder=hist, prune=True)
    # p6 and p7.. absent or only rejected: p6 kept (a bad row never removes), p7-p9 pruned.
    assert r.removed == 3
    assert r.rejected == 4
    assert r.rejects_path is not None
    rejects = Path(r.rejects_path).read_text().splitlines()
    assert rejects[0] == "line,product_id,reason"
    text = "\n".join(rejects)
    assert "image file not found: img/p5_0.jpg" in text
    assert "remote images not supported yet" in text
    assert "missing product_id" in text
    assert "truncated or corrupt" in text or "unreadable" in text

    live = LiveIndex.open(settings, hist.name)
    try:
        assert live.size["products"] == 7  # p0-p6
        # p5 lost a row to a reject: its earlier image stays searchable.
        _, imgs = live.product("p5")
        assert len(imgs) == 2
    finally:
        live.close()


def test_remote_rows_go_to_fetch_hook(
    tmp_path: Path, settings: Settings, hist: HistEmbedder
) -> None:
    m = tmp_path / "m.jsonl"
    m.write_text(
        json.dumps({"product_id": "r1", "image": "https://shop.example/a.jpg"})
        + "\n"
        + json.dumps({"product_id": "r2", "image": "https://shop.example/404.jpg"})
        + "\n"
    )

    def fetch(url: str) -> bytes:
        if url.endswith("404.jpg"):
            raise OSError("HTTP 404")
        return image_bytes(5)

    r = run_index(settings, m, embedder=hist, fetch=fetch)
    assert (r.indexed, r.rejected) == (1, 1)
    assert "HTTP 404" in json.dumps(r.rejects_sample)


def test_prune_refuses_when_nothing_valid(
    tmp_path: Path, settings: Settings, hist: HistEmbedder
) -> None:
    run_index(settings, write_catalog(tmp_path / "cat", 3, 1), embedder=hist)
    bad = tmp_path / "bad.csv"
    bad.write_text("product_id,image\n,a.jpg\n")
    with pytest.raises(ManifestError, match="refusing to --prune"):
        run_index(settings, bad, embedder=hist, prune=True)


def test_model_mismatch(tmp_path: Path, settings: Settings, hist: HistEmbedder) -> None:
    run_index(settings, write_catalog(tmp_path / "cat", 3, 1), embedder=hist)
    with pytest.raises(ModelMismatch, match=r"test-thumb.*other-model|other-model.*test-thumb"):
        LiveIndex.open(settings, "other-model")
    with pytest.raises(ModelMismatch):
        load_snapshot(settings, "other-model")


def test_other_model_gets_its_own_embeddings(
    tmp_path: Path, settings: Settings, hist: HistEmbedder
) -> None:
    manifest = write_catalog(tmp_path / "cat", 3, 2)
    run_index(settings, manifest, embedder=hist)
    r = run_index(settings, manifest, embedder=HistEmbedder("test-thumb-2"))
    assert r.indexed == 6
    LiveIndex.open(settings, "test-thumb-2").close()


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete", "facts"])
def test_corrupt_snapshot_is_refused(
    tmp_path: Path, settings: Settings, hist: HistEmbedder, damage: str
) -> None:
    manifest = write_catalog(tmp_path / "cat", 5, 2)
    run_index(settings, manifest, embedder=hist)
    snap = load_snapshot(settings, hist.name)
    victims = [n for n in snap.facts["files"] if n != "idmap.json"] or ["idmap.json"]
    target = snap.path / (victims[0] if damage != "facts" else "facts.json")
    if damage == "flip":
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0xFF
        target.write_bytes(bytes(data))
    elif damage == "truncate":
        target.write_bytes(target.read_bytes()[:10])
    elif damage == "delete":
        target.unlink()
    else:
        target.write_text("{not json")
    with pytest.raises(SnapshotError):
        load_snapshot(settings, hist.name)


def test_live_keeps_serving_when_new_snapshot_is_corrupt(
    tmp_path: Path, settings: Settings, hist: HistEmbedder
) -> None:
    manifest = write_catalog(tmp_path / "cat", 5, 2)
    run_index(settings, manifest, embedder=hist)
    live = LiveIndex.open(settings, hist.name)
    try:
        old = live.version
        r = run_index(settings, manifest, embedder=hist)
        (settings.snapshots_dir / r.snapshot_id / "idmap.json").write_text("[]")
        assert live.maybe_reload() is False
        assert live.version == old
        q = hist.embed_prepared(np.ones((1, 3, 4, 4), np.float32))[0]
        assert len(live.search(q, 3, SearchFilters())) == 3
        # A good snapshot published later is picked up.
        r2 = run_index(settings, manifest, embedder=hist)
        assert live.maybe_reload() is True
        assert live.version.startswith(r2.snapshot_id)
    finally:
        live.close()


def test_empty_catalog_snapshot(tmp_path: Path, settings: Settings, hist: HistEmbedder) -> None:
    m = tmp_path / "m.csv"
    m.write_text("product_id,image\np1,missing.jpg\n")
    r = run_index(settings, m, embedder=hist)
    assert (r.indexed, r.rejected, r.vectors) == (0, 1, 0)
    live = LiveIndex.open(settings, hist.name)
    try:
        q = np.ones(hist.dim, np.float32)
        assert live.search(q, 5, SearchFilters()) == []
        CatalogWriter(live).upsert_product(ProductRecord("p2"), [image_bytes(3)], hist)
        assert [h.product.product_id for h in live.search(q, 5, SearchFilters())] == ["p2"]
    finally:
        live.close()


def test_real_model_end_to_end(tmp_path: Path, settings: Settings, embedder: ImageEmbedder) -> None:
    manifest = write_catalog(tmp_path / "cat", 4, 2, fmt="jsonl")
    r = run_index(settings, manifest, embedder=embedder)
    assert (r.indexed, r.vectors) == (8, 8)
    live = LiveIndex.open(settings, embedder.name)
    try:
        photo = (tmp_path / "cat" / "img" / "p2_1.jpg").read_bytes()
        q = embedder.embed([decode_image(photo, max_pixels=10**8)])[0]
        hits = live.search(q, 3, SearchFilters())
        assert hits[0].product.product_id == "p2" and hits[0].score > 0.99
        CatalogWriter(live).upsert_product(ProductRecord("twin", title="Twin"), [photo], embedder)
        ids = [h.product.product_id for h in live.search(q, 2, SearchFilters())]
        assert set(ids) == {"p2", "twin"}
    finally:
        live.close()


class _PickyEmbedder(HistEmbedder):
    """Fails on 13-pixel-wide images, like a model choking on one odd photo."""

    def prepare(self, image: Image.Image) -> np.ndarray:
        if image.size[0] == 13:
            raise ValueError("odd image")
        return super().prepare(image)


def test_unexpected_failure_on_one_image_is_a_reject(tmp_path: Path, settings: Settings) -> None:
    manifest = write_catalog(tmp_path / "cat", 4, 1)
    (tmp_path / "cat" / "img" / "odd.jpg").write_bytes(image_bytes(1, size=13))
    with open(manifest, "a", encoding="utf-8") as f:
        f.write("p9,img/odd.jpg,Odd,odd,1,EUR,yes\n")
    r = run_index(settings, manifest, embedder=_PickyEmbedder())
    assert (r.indexed, r.rejected) == (4, 1)
    assert r.rejects_sample[0]["line"] == 6
    assert "cannot be processed" in r.rejects_sample[0]["reason"]


def test_one_run_at_a_time_and_progress(
    tmp_path: Path, settings: Settings, hist: HistEmbedder
) -> None:
    manifest = write_catalog(tmp_path / "cat", 3, 2)
    with run_lock(settings), pytest.raises(Conflict, match="another `shoplens index`"):
        run_index(settings, manifest, embedder=hist)
    seen: list[tuple[int, int]] = []
    run_index(settings, manifest, embedder=hist, on_progress=lambda d, t: seen.append((d, t)))
    assert seen == [(i, 6) for i in range(1, 7)]
