"""The catalog store on both engines (``target``: a SQLite file, a PostgreSQL
database): rows and their change sequence, vector ids that stay unique across
plans and plain writes, the embedding and source caches, orphan collection, the
snapshot pointer row; and a catalog.db of the release before versioned
migrations opening with its data."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from shoplens.db import Database
from shoplens.db.migrations import status
from shoplens.indexer.catalog import text
from shoplens.indexer.catalog.schema import _SCHEMA
from shoplens.indexer.catalog.store import CatalogStore
from shoplens.indexer.catalog.text import words
from shoplens.indexer.catalog.types import NewImage, ProductRecord


def sha(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def item(
    pid: str, *shas: int, title: str = "", price: float | None = None
) -> tuple[ProductRecord, list[NewImage], bool]:
    record = ProductRecord(pid, title=title or pid, price=price, attributes={"k": "v"})
    return record, [NewImage(f"{pid}-{s}.jpg", sha(s)) for s in shas], True


def test_rows_seq_and_changes(target: Path | str) -> None:
    with CatalogStore(target) as store:
        assert store.seq() == 0
        assert store.upsert_products([item("a", 1, 2, price=9.5), item("b", 3)]) == 5
        assert store.seq() == 1
        assert store.upsert_products([item("a", 1, 2, price=9.5)]) == 0  # nothing changed
        assert store.seq() == 1
        found = store.get_product("a")
        assert found is not None
        product, images = found
        assert product.price == 9.5 and product.attributes == {"k": "v"} and product.in_stock
        assert [im.sha256 for im in images] == [sha(1), sha(2)]
        store.upsert_products([item("a", 2)])  # image 1 replaced away
        assert store.delete_products(["b", "zz"]) == 1
        seq, changes = store.changes_since(1)
        assert seq == 3 and set(changes) == {"a", "b"}
        assert changes["b"] == (None, []) and [im.sha256 for im in changes["a"][1]] == [sha(2)]
        assert store.counts() == {"products": 1, "images": 1}
        assert store.live_product_ids() == {"a"}
        found_image = store.find_image(images[0].image_id)
        assert found_image is not None and found_image.deleted


def test_vids_stay_unique_across_plans_and_writes(target: Path | str) -> None:
    with CatalogStore(target) as store:
        store.upsert_products([item("a", 1)])
        plan = store.plan_catalog([item("a", 1), item("p", 10), item("q", 11)], prune_keep=None)
        reserved = sorted(plan.new_vids.values())
        assert len(reserved) == 2
        # A PUT between the plan and its commit gets a vid the plan did not reserve.
        store.upsert_products([item("x", 20)])
        store.commit_plan(plan)
        _seq, _products, rows = store.load_catalog()
        vids = [im.vid for im in rows]
        assert len(vids) == len(set(vids)) == 4
        by_product = {im.product_id: im.vid for im in rows}
        assert sorted([by_product["p"], by_product["q"]]) == reserved
        assert by_product["x"] not in reserved and by_product["x"] > by_product["a"]
        store.upsert_products([item("y", 21)])
        assert store.load_catalog()[2][-1].vid > max(vids)


def test_embeddings_sources_and_collect(target: Path | str) -> None:
    with CatalogStore(target) as store:
        v = np.arange(4, dtype=np.float32)
        store.put_embeddings("m", [(sha(1), v), (sha(2), v + 1)], [("/a.jpg", 10, 99, sha(1))])
        store.put_embeddings("m", [(sha(1), v * 2)], [("/a.jpg", 11, 100, sha(1))])  # replaced
        got = store.get_embeddings("m", [sha(1), sha(2), sha(3)])
        assert set(got) == {sha(1), sha(2)} and got[sha(1)].tolist() == [0, 2, 4, 6]
        assert store.embedded_shas("m", [sha(1), sha(3)]) == {sha(1)}
        assert store.count_embeddings("m") == 2 and store.embedded_shas_all("m") == {sha(1), sha(2)}
        assert store.cached_sha("/a.jpg", 11, 100) == sha(1)
        assert store.cached_sha("/a.jpg", 10, 99) is None
        store.upsert_products([item("a", 1)])
        _seq, images, vectors = store.live_vectors("m")
        assert [im.sha256 for im in images] == [sha(1)] and vectors is not None
        assert vectors.tolist() == [[0, 2, 4, 6]]
        stats = store.embedding_stats()
        assert stats[sha(2)].rows == 1 and stats[sha(2)].bytes == 16
        removed: list[list[str]] = []
        doomed, n, size = store.collect(
            [sha(1), sha(2)], written_before=1e12, remove_files=lambda s: removed.append(s) or s
        )
        assert doomed == [sha(2)] and (n, size) == (1, 16) and removed == [[sha(2)]]
        assert store.embedded_shas_all("m") == {sha(1)}


def test_the_snapshot_pointer_row(target: Path | str) -> None:
    with CatalogStore(target) as store, CatalogStore(target) as other:
        assert store.snapshot_pointer() is None
        seq = store.seq()
        store.publish_snapshot("20260101T000000000000Z-abcdef")
        assert other.snapshot_pointer() == "20260101T000000000000Z-abcdef"
        assert other.seq() == seq  # a pointer move is not a catalog edit


def test_concurrent_writers_never_share_a_seq(target: Path | str) -> None:
    """Two stores (two connections, as two replicas) writing at once: the
    read-modify-write of the seq is serialised, every write gets its own."""
    stores = [CatalogStore(target) for _ in range(2)]
    try:

        def write(store: CatalogStore, prefix: str) -> None:
            for i in range(15):
                store.upsert_products([item(f"{prefix}{i}", 1000 + i)])

        threads = [
            threading.Thread(target=write, args=(s, p)) for s, p in zip(stores, "xy", strict=True)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert stores[0].seq() == 30
        seq, changes = stores[1].changes_since(0)
        assert seq == 30 and len(changes) == 30
        _s, _p, images = stores[0].load_catalog()
        assert len({im.vid for im in images}) == 30 and len({im.seq for im in images}) == 30
    finally:
        for s in stores:
            s.close()


def test_migrations_are_recorded_once(target: Path | str) -> None:
    with CatalogStore(target) as store:
        assert [m.split(" ")[0] for m in store.applied_migrations] == [
            "catalog:1",
            "catalog:2",
            "catalog:3",
        ]
    with CatalogStore(target) as store:
        assert store.applied_migrations == []  # opened again: nothing left to apply
    db = Database(target, name="check")
    try:
        assert status(db) == {"catalog": 3}
    finally:
        db.close()


# The catalog.db the release before versioned migrations wrote: its tables
# (embeddings from before garbage collection had no written_at column), the
# FTS5 word index at version 1, and no schema_migrations table.
_OLD_EMBEDDINGS = """
CREATE TABLE idx_embeddings (
    model TEXT NOT NULL, sha256 TEXT NOT NULL, dim INTEGER NOT NULL, vector BLOB NOT NULL,
    PRIMARY KEY (model, sha256)
) WITHOUT ROWID;
"""


def test_a_catalog_of_the_previous_release_opens_with_its_data(tmp_path: Path) -> None:
    path = tmp_path / "catalog.db"
    old = sqlite3.connect(path, isolation_level=None)
    old.executescript(_OLD_EMBEDDINGS + _SCHEMA)
    old.executescript(text._DDL)
    old.execute("INSERT INTO idx_meta(key, value) VALUES ('text_index', '1'), ('seq', '4')")
    old.execute(
        "INSERT INTO idx_products(product_id, title, attributes, seq) "
        "VALUES ('a', 'Wombat teapot', '{}', 4)"
    )
    old.execute(
        "INSERT INTO idx_images(image_id, product_id, source, sha256, seq) "
        f"VALUES ('{sha(7)[:20]}', 'a', 'a.jpg', '{sha(7)}', 4)"
    )
    old.execute(
        "INSERT INTO idx_embeddings(model, sha256, dim, vector) VALUES ('m', ?, 2, ?)",
        (sha(7), np.ones(2, np.float32).tobytes()),
    )
    old.execute("INSERT INTO idx_text_ids(product_id) SELECT product_id FROM idx_text_dirty")
    old.execute(
        "INSERT INTO idx_text(rowid, title, category, attributes, description) "
        "SELECT tid, 'Wombat teapot', '', '', '' FROM idx_text_ids"
    )
    old.execute("DELETE FROM idx_text_dirty")
    old.close()
    with CatalogStore(path) as store:
        assert [m.split(" ")[0] for m in store.applied_migrations] == [
            "catalog:1",
            "catalog:2",
            "catalog:3",
        ]
        assert store.seq() == 4 and store.live_product_ids() == {"a"}
        assert [pid for pid, _ in store.text_ranked(words("wombat"), 10)] == ["a"]
        _seq, _images, vectors = store.live_vectors("m")
        assert vectors is not None and vectors.tolist() == [[1.0, 1.0]]
        stats = store.embedding_stats()
        assert stats[sha(7)].written_at == 0.0  # older than the column
        store.upsert_products([item("b", 8, title="Wombat cup")])
        assert sorted(pid for pid, _ in store.text_ranked(words("wombat"), 10)) == ["a", "b"]
        assert store.load_catalog()[2][-1].vid == 2


def test_opening_does_not_wait_for_another_writer(target: Path | str) -> None:
    """A replica (or a command) opening the store while another holds a long write
    transaction (a big run's commit) reads its schema version and goes on."""
    with CatalogStore(target) as writer, writer.transaction() as c:
        c.execute("SELECT 1").fetchone()
        started = time.monotonic()
        with CatalogStore(target, timeout_s=1.0) as opened:
            assert opened.seq() == 0 and opened.applied_migrations == []
        assert time.monotonic() - started < 1.0


def test_a_nul_character_is_refused_and_nothing_is_written(target: Path | str) -> None:
    from shoplens.errors import BadParameter

    with CatalogStore(target) as store:
        store.upsert_products([item("a", 1)])
        bad = ProductRecord("b", title="bad\x00title")
        with pytest.raises(BadParameter, match="NUL"):
            store.upsert_products([item("c", 2), (bad, [], True)])
        assert store.live_product_ids() == {"a"} and store.seq() == 1
