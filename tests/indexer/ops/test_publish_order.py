"""A re-index run's catalog changes become visible together with its snapshot, never before.

Real SQLite, real FAISS, real files. The faults are injected at the real
publish step of ``shoplens.indexer.serving.snapshot`` (the atomic write of CURRENT and
what follows it), never by replacing the code under test.
"""

from __future__ import annotations

import csv
import errno
import io
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from shoplens.config import Settings
from shoplens.errors import NotFound
from shoplens.indexer.catalog.types import ProductRecord, SearchFilters
from shoplens.indexer.ops.build import run_index
from shoplens.indexer.serving import pointer as pointer_mod
from shoplens.indexer.serving import snapshot as snapshot_mod
from shoplens.indexer.serving.live import LiveIndex
from shoplens.indexer.serving.snapshot import CURRENT, current_id, load_snapshot
from shoplens.indexer.serving.writer import CatalogWriter
from tests.indexer.helpers import HistEmbedder, image_bytes, write_catalog

Rows = tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]
Seen = tuple[str, ...]  # (product_id, image_id, score) of the top hits, flattened to text


def _rows(db: Path) -> Rows:
    """Every products and images row, as stored (deleted ones and seq included)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        products = con.execute("SELECT * FROM idx_products ORDER BY product_id").fetchall()
        images = con.execute("SELECT * FROM idx_images ORDER BY vid").fetchall()
    finally:
        con.close()
    return products, images


def _vec(hist: HistEmbedder, photo: bytes) -> np.ndarray:
    return hist.embed([Image.open(io.BytesIO(photo))])[0]


def _v1(root: Path) -> Path:
    return write_catalog(root, 10, 2)


def _v2(root: Path) -> Path:
    """The next catalog: every title changed, p3 has a new photo, p1 and p2 are
    gone, p10..p13 are new (p0..p9 keep their bytes: no re-embedding)."""
    manifest = write_catalog(root, 14, 2, extra={"title": "Renamed"})
    (root / "img" / "p3_0.jpg").write_bytes(image_bytes(777_777))
    with manifest.open(encoding="utf-8", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["product_id"] not in {"p1", "p2"}]
    with manifest.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return manifest


def _photos(v1: Path, v2: Path) -> dict[str, bytes]:
    """Query photos: old ones of kept, changed and removed products, new ones."""
    return {
        "p0": (v1.parent / "img" / "p0_0.jpg").read_bytes(),
        "p1": (v1.parent / "img" / "p1_1.jpg").read_bytes(),
        "p3-old": (v1.parent / "img" / "p3_0.jpg").read_bytes(),
        "p3-new": (v2.parent / "img" / "p3_0.jpg").read_bytes(),
        "p10": (v2.parent / "img" / "p10_0.jpg").read_bytes(),
        "p13": (v2.parent / "img" / "p13_1.jpg").read_bytes(),
    }


def _results(live: LiveIndex, hist: HistEmbedder, photos: dict[str, bytes]) -> dict[str, Seen]:
    out: dict[str, Seen] = {}
    for name, photo in photos.items():
        hits = live.search(_vec(hist, photo), 5, SearchFilters())
        out[name] = tuple(f"{h.product.product_id}/{h.image_id}/{h.score:.6f}" for h in hits)
    return out


def _shows_old_catalog(live: LiveIndex, hist: HistEmbedder, photos: dict[str, bytes]) -> None:
    assert live.size["products"] == 10
    assert live.product("p0")[0].title == "Product 0"
    assert live.product("p1")[0].title == "Product 1"  # removed by the run: still here
    for new in ("p10", "p13"):
        with pytest.raises(NotFound):
            live.product(new)
    for name, pid in (("p0", "p0"), ("p1", "p1"), ("p3-old", "p3")):
        top = live.search(_vec(hist, photos[name]), 1, SearchFilters())[0]
        assert top.product.product_id == pid and top.score > 0.99, (name, top)
    top = live.search(_vec(hist, photos["p10"]), 3, SearchFilters())
    assert "p10" not in {h.product.product_id for h in top}


def _shows_new_catalog(live: LiveIndex, hist: HistEmbedder, photos: dict[str, bytes]) -> None:
    assert live.size["products"] == 12
    assert live.product("p0")[0].title == "Renamed"
    for gone in ("p1", "p2"):
        with pytest.raises(NotFound):
            live.product(gone)
    for name, pid in (("p0", "p0"), ("p3-new", "p3"), ("p10", "p10"), ("p13", "p13")):
        top = live.search(_vec(hist, photos[name]), 1, SearchFilters())[0]
        assert top.product.product_id == pid and top.score > 0.99, (name, top)


def _at_publish(
    monkeypatch: pytest.MonkeyPatch, before_switch: Callable[[], None], *, fail: bool = False
) -> list[Path]:
    """Call ``before_switch`` when the run is about to move CURRENT (its snapshot is
    fully written, nothing published yet); with ``fail`` the switch then fails
    like a full disk. Returns the CURRENT writes seen (the hook must fire)."""
    real = pointer_mod.write_atomic
    seen: list[Path] = []

    def write_atomic(path: Path, data: bytes, *, fsync: bool = True) -> None:
        if path.name == CURRENT:
            seen.append(path)
            before_switch()
            if fail:
                raise OSError(errno.ENOSPC, "No space left on device (injected)")
        real(path, data, fsync=fsync)

    monkeypatch.setattr(pointer_mod, "write_atomic", write_atomic)
    return seen


def test_a_running_service_does_not_see_the_run_before_its_snapshot(
    tmp_path: Path, settings: Settings, hist: HistEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    v1, v2 = _v1(tmp_path / "v1"), _v2(tmp_path / "v2")
    first = run_index(settings, v1, embedder=hist)
    photos = _photos(v1, v2)
    live = LiveIndex.open(settings, hist.name)
    checked: list[str] = []

    def between_embedding_and_publishing() -> None:
        live.maybe_reload()  # what the service's reload tick does
        _shows_old_catalog(live, hist, photos)
        fresh = LiveIndex.open(settings, hist.name)  # a service starting now
        try:
            assert fresh.snapshot_id == first.snapshot_id
            _shows_old_catalog(fresh, hist, photos)
        finally:
            fresh.close()
        checked.append("ok")

    seen = _at_publish(monkeypatch, between_embedding_and_publishing)
    try:
        report = run_index(settings, v2, embedder=hist, prune=True)
        assert seen and checked == ["ok"]
        assert (report.indexed, report.removed, report.products) == (9, 2, 12)
        assert live.maybe_reload() is True
        assert live.snapshot_id == report.snapshot_id
        _shows_new_catalog(live, hist, photos)
    finally:
        live.close()
    # The rows were committed with the ids the snapshot was built with: every
    # live image is served from the snapshot, none from the (exact) overlay.
    live_vids = {row[0] for row in _rows(settings.db_path)[1] if not row[6]}
    assert live_vids == set(load_snapshot(settings, hist.name).vids.tolist())


def test_a_run_whose_publish_fails_changes_nothing(
    tmp_path: Path, settings: Settings, hist: HistEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    v1, v2 = _v1(tmp_path / "v1"), _v2(tmp_path / "v2")
    first = run_index(settings, v1, embedder=hist)
    photos = _photos(v1, v2)
    live = LiveIndex.open(settings, hist.name)
    try:
        rows = _rows(settings.db_path)
        results = _results(live, hist, photos)
        version = live.version
        seen = _at_publish(monkeypatch, lambda: None, fail=True)
        with pytest.raises(OSError, match="injected"):
            run_index(settings, v2, embedder=hist, prune=True)
        assert seen
        assert current_id(settings) == first.snapshot_id
        assert _rows(settings.db_path) == rows  # not one products/images row changed
        live.maybe_reload()
        assert live.version == version
        assert _results(live, hist, photos) == results
        _shows_old_catalog(live, hist, photos)
        restarted = LiveIndex.open(settings, hist.name)
        try:
            assert restarted.version == version
            assert _results(restarted, hist, photos) == results
        finally:
            restarted.close()

        # The next run (publishing works again) does the whole job.
        monkeypatch.undo()
        report = run_index(settings, v2, embedder=hist, prune=True)
        assert (report.indexed, report.unchanged, report.removed) == (0, 24, 2)
        assert live.maybe_reload() is True
        _shows_new_catalog(live, hist, photos)
    finally:
        live.close()


class _Killed(BaseException):
    """Stands for a SIGKILL: a BaseException, so no ``except Exception`` handles it."""


def test_killed_right_after_the_switch_serves_the_old_catalog_then_a_rerun_repairs(
    tmp_path: Path, settings: Settings, hist: HistEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one window where a new snapshot is live but the run's catalog rows are
    not committed: the service serves the old catalog (vectors the new snapshot
    lacks come from the embeddings cache), and the next run completes the job."""
    v1, v2 = _v1(tmp_path / "v1"), _v2(tmp_path / "v2")
    run_index(settings, v1, embedder=hist)
    photos = _photos(v1, v2)
    rows = _rows(settings.db_path)

    def killed(*_args: object, **_kwargs: object) -> list[str]:
        raise _Killed  # nothing of the run after this point happens

    monkeypatch.setattr(snapshot_mod, "prune_snapshots", killed)
    with pytest.raises(_Killed):
        run_index(settings, v2, embedder=hist, prune=True)
    monkeypatch.undo()
    published = current_id(settings)
    assert _rows(settings.db_path) == rows

    live = LiveIndex.open(settings, hist.name)
    try:
        assert live.snapshot_id == published
        _shows_old_catalog(live, hist, photos)
        # The published snapshot holds vectors of rows never committed: their
        # ids were reserved, so a PUT now cannot get one and be searched with
        # another photo's vector.
        uploaded = image_bytes(5151)
        CatalogWriter(live).upsert_product(
            ProductRecord("svc-2", title="Uploaded"), [uploaded], hist
        )
        top = live.search(_vec(hist, uploaded), 1, SearchFilters())[0]
        assert top.product.product_id == "svc-2" and top.score > 0.99
        for name in ("p10", "p13", "p3-new"):
            top = live.search(_vec(hist, photos[name]), 1, SearchFilters())[0]
            assert top.score < 0.99, (name, top)

        report = run_index(settings, v2, embedder=hist, prune=True)
        assert report.snapshot_id != published and report.removed == 3  # p1, p2, svc-2
        assert live.maybe_reload() is True
        _shows_new_catalog(live, hist, photos)
        assert live.size["vectors"] == report.vectors == 24
    finally:
        live.close()


def test_service_edits_made_while_a_run_builds_win_over_the_run(
    tmp_path: Path, settings: Settings, hist: HistEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run's catalog is the manifest as of its end of embedding; a PUT or DELETE
    acknowledged after that is newer and is neither undone nor lost by the commit."""
    v1, v2 = _v1(tmp_path / "v1"), _v2(tmp_path / "v2")
    run_index(settings, v1, embedder=hist)
    photos = _photos(v1, v2)
    edited, created = image_bytes(4242), image_bytes(4343)
    live = LiveIndex.open(settings, hist.name)

    def service_edits() -> None:
        CatalogWriter(live).upsert_product(ProductRecord("p4", title="Edited"), [edited], hist)
        CatalogWriter(live).delete_product("p5")
        CatalogWriter(live).upsert_product(
            ProductRecord("svc-1", title="Uploaded"), [created], hist
        )

    seen = _at_publish(monkeypatch, service_edits)
    try:
        run_index(settings, v2, embedder=hist, prune=True)
        assert seen
        live.maybe_reload()
        _shows_edits_and_run(live, hist, photos, edited, created)
    finally:
        live.close()
    restarted = LiveIndex.open(settings, hist.name)
    try:
        _shows_edits_and_run(restarted, hist, photos, edited, created)
    finally:
        restarted.close()


def _shows_edits_and_run(
    live: LiveIndex, hist: HistEmbedder, photos: dict[str, bytes], edited: bytes, created: bytes
) -> None:
    product, images = live.product("p4")
    assert product.title == "Edited" and len(images) == 1
    with pytest.raises(NotFound):
        live.product("p5")
    assert live.product("svc-1")[0].title == "Uploaded"  # made after the run's plan: not pruned
    assert live.product("p10")[0].title == "Renamed"  # the run's own changes are in
    with pytest.raises(NotFound):
        live.product("p1")
    for photo, pid in ((edited, "p4"), (created, "svc-1"), (photos["p10"], "p10")):
        top = live.search(_vec(hist, photo), 1, SearchFilters())[0]
        assert top.product.product_id == pid and top.score > 0.99
