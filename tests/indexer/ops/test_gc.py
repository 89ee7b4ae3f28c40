"""`shoplens gc`: unreferenced photos and embeddings go, everything still referenced stays.

Real runs (HistEmbedder), real SQLite, real files; the service-side flow (API
DELETE/PUT, renditions, restart) is in tests/service/test_gc_service.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from shoplens.cli import app
from shoplens.config import Settings
from shoplens.errors import Conflict, SnapshotError
from shoplens.files.atomic import write_atomic
from shoplens.indexer.catalog.photos import photo_path
from shoplens.indexer.catalog.store import CatalogStore
from shoplens.indexer.catalog.types import NewImage, ProductRecord, SearchFilters
from shoplens.indexer.ops.build import run_index, run_lock
from shoplens.indexer.ops.gc import collect_garbage
from shoplens.indexer.serving.live import LiveIndex
from shoplens.indexer.serving.snapshot import current_id, load_snapshot
from shoplens.models.decode import decode_image
from tests.indexer.helpers import HistEmbedder, image_bytes, write_catalog

LATER = 2 * 3600.0  # past the default grace period of an hour


def _shas(settings: Settings, product_id: str) -> list[str]:
    with CatalogStore(settings.db_path) as store:
        found = store.get_product(product_id)
    assert found is not None
    return [im.sha256 for im in found[1]]


def _embedded(settings: Settings, model: str, shas: list[str]) -> set[str]:
    with CatalogStore(settings.db_path) as store:
        return store.embedded_shas(model, shas)


def _state(settings: Settings) -> tuple[list[str], list[tuple[str, str]]]:
    """Every file under the data dir (but SQLite's own) and every embedding row."""
    files = sorted(
        str(p.relative_to(settings.data_dir))
        for p in settings.data_dir.rglob("*")
        if not p.name.endswith(("-wal", "-shm"))
    )
    with CatalogStore(settings.db_path) as store, store.read() as db:
        rows = db.execute("SELECT model, sha256 FROM idx_embeddings").fetchall()
    return files, sorted((r[0], r[1]) for r in rows)


def _search_top(settings: Settings, hist: HistEmbedder, data: bytes) -> str:
    live = LiveIndex.open(settings, hist.name)
    try:
        vector = hist.embed([decode_image(data, max_pixels=10_000_000)])[0]
        hits = live.search(vector, 1, SearchFilters())
    finally:
        live.close()
    return hits[0].product.product_id


@pytest.fixture
def pruned(tmp_path: Path, settings: Settings, hist: HistEmbedder) -> tuple[Path, list[str]]:
    """Four products indexed, then p3 pruned away; returns (manifest of p0-p2, p3's shas)."""
    full = write_catalog(tmp_path / "full", 4, 2)
    run_index(settings, full, embedder=hist)
    gone = _shas(settings, "p3")
    manifest = write_catalog(tmp_path / "cat", 3, 2)
    report = run_index(settings, manifest, prune=True, embedder=hist)
    assert report.removed == 1
    return manifest, gone


def test_pruned_product_is_kept_while_a_snapshot_lists_it_then_collected(
    tmp_path: Path, settings: Settings, hist: HistEmbedder, pruned: tuple[Path, list[str]]
) -> None:
    manifest, gone = pruned
    kept = _shas(settings, "p0") + _shas(settings, "p1") + _shas(settings, "p2")

    # The snapshot before the prune is still on disk (a service may serve it):
    # nothing of p3 may go, however old.
    r = collect_garbage(settings, now=time.time() + LATER)
    assert (r.photos, r.embeddings, r.snapshot_only, r.snapshots) == (0, 0, 2, 2)
    assert all(photo_path(settings.data_dir, s).is_file() for s in gone)

    # Two more runs push that snapshot out (current + 2 previous are kept).
    for _ in range(2):
        run_index(settings, manifest, embedder=hist)
    photo_bytes = sum(photo_path(settings.data_dir, s).stat().st_size for s in gone)

    # Within the grace period nothing goes either.
    young = collect_garbage(settings)
    assert (young.photos, young.embeddings, young.young) == (0, 0, 2)

    r = collect_garbage(settings, now=time.time() + LATER)
    assert (r.photos, r.embeddings, r.snapshot_only) == (2, 2, 0)
    assert r.photo_bytes == photo_bytes and r.embedding_bytes == 2 * hist.dim * 4
    assert r.bytes_freed >= photo_bytes
    assert not any(photo_path(settings.data_dir, s).exists() for s in gone)
    assert _embedded(settings, hist.name, gone) == set()
    # Everything the catalog uses is intact, and it still searches.
    assert all(photo_path(settings.data_dir, s).is_file() for s in kept)
    assert _embedded(settings, hist.name, kept) == set(kept)
    load_snapshot(settings, hist.name)
    p1 = (tmp_path / "cat" / "img" / "p1_0.jpg").read_bytes()
    assert _search_top(settings, hist, p1) == "p1"

    # A second pass finds nothing; a run bringing p3 back embeds it again.
    again = collect_garbage(settings, now=time.time() + LATER)
    assert (again.photos, again.embeddings) == (0, 0)
    back = run_index(settings, tmp_path / "full" / "catalog.csv", embedder=hist)
    assert (back.indexed, back.unchanged) == (2, 6)
    assert all(photo_path(settings.data_dir, s).is_file() for s in gone)
    p3 = (tmp_path / "full" / "img" / "p3_1.jpg").read_bytes()
    assert _search_top(settings, hist, p3) == "p3"


def test_dry_run_reports_the_same_and_deletes_nothing(
    tmp_path: Path, settings: Settings, hist: HistEmbedder, pruned: tuple[Path, list[str]]
) -> None:
    manifest, _gone = pruned
    for _ in range(2):
        run_index(settings, manifest, embedder=hist)
    before = _state(settings)
    dry = collect_garbage(settings, dry_run=True, now=time.time() + LATER)
    assert _state(settings) == before
    assert (dry.photos, dry.embeddings, dry.dry_run) == (2, 2, True)
    assert any(line.startswith("would delete 2 photos") for line in dry.lines())
    real = collect_garbage(settings, now=time.time() + LATER)
    assert (real.photos, real.photo_bytes, real.embeddings, real.embedding_bytes) == (
        dry.photos,
        dry.photo_bytes,
        dry.embeddings,
        dry.embedding_bytes,
    )
    assert _state(settings) != before


def test_embedding_and_photo_of_a_write_in_flight_are_kept(
    settings: Settings, hist: HistEmbedder, tmp_path: Path
) -> None:
    """What a PUT writes before committing its image row: photo, then embedding."""
    run_index(settings, write_catalog(tmp_path / "cat", 2, 1), embedder=hist)
    data = image_bytes(4242)
    sha = hashlib.sha256(data).hexdigest()
    write_atomic(photo_path(settings.data_dir, sha), data)
    with CatalogStore(settings.db_path) as store:
        store.put_embeddings(
            hist.name, [(sha, hist.embed([decode_image(data, max_pixels=10**7)])[0])]
        )

    r = collect_garbage(settings)  # default grace: an hour
    assert (r.photos, r.embeddings, r.young) == (0, 0, 1)
    assert photo_path(settings.data_dir, sha).is_file()
    assert _embedded(settings, hist.name, [sha]) == {sha}
    # An old photo is not enough: the embedding row is young.
    old = time.time() - LATER
    os.utime(photo_path(settings.data_dir, sha), (old, old))
    assert collect_garbage(settings).young == 1
    assert photo_path(settings.data_dir, sha).is_file()

    r = collect_garbage(settings, grace_s=0)
    assert (r.photos, r.embeddings, r.young) == (1, 1, 0)
    assert not photo_path(settings.data_dir, sha).exists()


def test_refuses_while_a_run_holds_the_index_lock(
    settings: Settings, hist: HistEmbedder, tmp_path: Path, pruned: tuple[Path, list[str]]
) -> None:
    manifest, _ = pruned
    for _ in range(2):
        run_index(settings, manifest, embedder=hist)
    before = _state(settings)
    with run_lock(settings), pytest.raises(Conflict, match="re-index"):
        collect_garbage(settings, now=time.time() + LATER)
    assert _state(settings) == before
    # ... and a run cannot start while gc holds it: gc takes the same lock.
    assert collect_garbage(settings, now=time.time() + LATER).photos == 2


def test_live_rows_keep_shared_photos_and_every_models_rows(
    tmp_path: Path, settings: Settings, hist: HistEmbedder
) -> None:
    """Photos added after the snapshot (as a PUT does) are protected by the rows alone."""
    run_index(settings, write_catalog(tmp_path / "cat", 2, 1), embedder=hist)
    data = image_bytes(777)
    sha = hashlib.sha256(data).hexdigest()
    write_atomic(photo_path(settings.data_dir, sha), data)
    other = HistEmbedder("other-model")
    vector = hist.embed([decode_image(data, max_pixels=10**7)])[0]
    with CatalogStore(settings.db_path) as store:
        store.put_embeddings(hist.name, [(sha, vector)])
        store.put_embeddings(other.name, [(sha, vector)])
        store.upsert_products(
            [(ProductRecord(pid), [NewImage("upload", sha)], True) for pid in ("q1", "q2")]
        )
        store.delete_products(["q1"])
    r = collect_garbage(settings, grace_s=0)
    assert (r.photos, r.embeddings) == (0, 0)  # q2 still uses the bytes
    assert _embedded(settings, other.name, [sha]) == {sha}
    assert photo_path(settings.data_dir, sha).is_file()

    with CatalogStore(settings.db_path) as store:
        store.delete_products(["q2"])
    r = collect_garbage(settings, grace_s=0)
    assert (r.photos, r.embeddings, r.photo_bytes) == (1, 2, len(data))  # both models' rows
    assert not photo_path(settings.data_dir, sha).exists()
    assert _embedded(settings, hist.name, [sha]) == _embedded(settings, other.name, [sha]) == set()
    p0 = (tmp_path / "cat" / "img" / "p0_0.jpg").read_bytes()
    assert _search_top(settings, hist, p0) == "p0"


def test_collect_checks_the_rows_again_in_its_transaction(
    tmp_path: Path, settings: Settings, hist: HistEmbedder
) -> None:
    """A row committed after gc listed its orphans (a PUT of the same bytes) wins."""
    run_index(settings, write_catalog(tmp_path / "cat", 2, 1), embedder=hist)
    (live,) = _shas(settings, "p0")
    offered: list[list[str]] = []

    def remove(shas: list[str]) -> list[str]:
        offered.append(shas)
        return shas

    with CatalogStore(settings.db_path) as store:
        later = time.time() + LATER
        assert store.collect([live], written_before=later, remove_files=remove) == ([], 0, 0)
        assert offered == [[]]
        assert store.embedded_shas(hist.name, [live]) == {live}


def test_unreadable_published_snapshot_stops_gc(
    settings: Settings, hist: HistEmbedder, tmp_path: Path, pruned: tuple[Path, list[str]]
) -> None:
    manifest, _ = pruned
    for _ in range(2):
        run_index(settings, manifest, embedder=hist)
    published = settings.snapshots_dir / str(current_id(settings))
    (published / "idmap.json").write_text("{torn")
    before = _state(settings)
    with pytest.raises(SnapshotError, match="published snapshot"):
        collect_garbage(settings, now=time.time() + LATER)
    assert _state(settings) == before


def test_stale_temporary_photo_files_go_fresh_ones_stay(
    settings: Settings, hist: HistEmbedder, tmp_path: Path
) -> None:
    run_index(settings, write_catalog(tmp_path / "cat", 2, 1), embedder=hist)
    folder = settings.data_dir / "images" / "ab"
    folder.mkdir(parents=True, exist_ok=True)
    stale, fresh = folder / ".ab12.jpg.1.2.tmp", folder / ".ab34.jpg.1.2.tmp"
    stale.write_bytes(b"x" * 100)
    fresh.write_bytes(b"y" * 100)
    old = time.time() - LATER
    os.utime(stale, (old, old))
    r = collect_garbage(settings, grace_s=0)
    assert (r.temp_files, r.temp_bytes) == (1, 100)
    assert fresh.exists() and not stale.exists()


def test_old_database_gets_the_written_at_column(settings: Settings, hist: HistEmbedder) -> None:
    settings.data_dir.mkdir(parents=True)
    with sqlite3.connect(settings.db_path) as db:
        db.execute(
            "CREATE TABLE idx_embeddings (model TEXT NOT NULL, sha256 TEXT NOT NULL, "
            "dim INTEGER NOT NULL, vector BLOB NOT NULL, PRIMARY KEY (model, sha256)) "
            "WITHOUT ROWID"
        )
        db.execute("INSERT INTO idx_embeddings VALUES ('m', 'ab', 1, x'00000000')")
    with CatalogStore(settings.db_path) as store, CatalogStore(settings.db_path) as again:
        stats = store.embedding_stats()
        assert stats["ab"].written_at == 0  # older than the column: as old as can be
        again.put_embeddings("m", [("cd", np.ones(1, np.float32))])
        assert store.embedding_stats()["cd"].written_at > time.time() - 60
    r = collect_garbage(settings)
    assert (r.embeddings, r.young) == (1, 1)  # "ab" goes, "cd" is young


def test_cli_gc_dry_run_and_json(
    tmp_path: Path, settings: Settings, hist: HistEmbedder, pruned: tuple[Path, list[str]]
) -> None:
    manifest, _ = pruned
    for _ in range(2):
        run_index(settings, manifest, embedder=hist)
    runner = CliRunner()
    data = ["--data-dir", str(settings.data_dir)]
    assert "gc" in runner.invoke(app, ["--help"]).output
    before = _state(settings)
    out = runner.invoke(app, ["gc", "--dry-run", "--grace-s", "0", *data])
    assert out.exit_code == 0, out.output
    assert "would delete 2 photos" in out.output and "would free" in out.output
    assert _state(settings) == before
    # Default grace (an hour): everything here is younger.
    out = runner.invoke(app, ["gc", "--json", *data])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["young"] == 2
    out = runner.invoke(app, ["gc", "--json", "--grace-s", "0", *data])
    body = json.loads(out.output)
    assert (body["photos"], body["embeddings"], body["dry_run"]) == (2, 2, False)
    assert body["bytes_freed"] >= body["photo_bytes"] > 0
    assert set(body["caches"]) == {"renditions", "fetch"}
