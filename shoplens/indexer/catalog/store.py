"""The catalog metadata store: products, images, cached embeddings, change sequence.

One SQLite file (``settings.db_path``), shared with other parts that keep their
own tables. Every catalog change takes the next value of one monotonically
increasing sequence and stamps it on the rows it touched, so a snapshot built
at sequence S plus every row with ``seq > S`` is the current catalog.

Embeddings are cached by ``(model, sha256 of the source bytes)``: this is what
makes indexing incremental (unchanged bytes are never embedded again) and
resumable (each batch is committed in one transaction).
Each row records when it was written
(``written_at``), which is what lets ``shoplens gc`` (``shoplens.indexer.ops.gc``)
tell an orphan from a row a PUT or a run wrote a moment before committing the
image row that uses it; :meth:`CatalogStore.collect` deletes orphans in a
write transaction that re-checks both.

Image rows are vector ids (``vid``): a vid is never reused and never changes
its bytes, which is what lets a snapshot and the rows disagree safely (the live
index trusts the rows and takes a vector from the snapshot only for a vid that
is live in both). A re-index run uses that to publish its snapshot *before* its
rows become visible: :meth:`CatalogStore.plan_catalog` works its changes out
and reserves the vids of its new image rows without changing a row,
:meth:`CatalogStore.planned` lets the snapshot be built from the catalog as it
will be, and :meth:`CatalogStore.commit_plan` writes the rows with exactly
those vids (see ``shoplens.indexer.ops.build`` for the order and why).
"""

from __future__ import annotations

import copy
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from shoplens.db import write_transaction
from shoplens.indexer.catalog.types import ImageRecord, ProductRecord

PHOTO_MAX_SIDE = 1024
IMAGE_ID_HEX = 20

_SCHEMA = """
CREATE TABLE IF NOT EXISTS idx_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS idx_products (
    product_id TEXT PRIMARY KEY,
    title TEXT, category TEXT, description TEXT, url TEXT,
    price REAL, currency TEXT,
    in_stock INTEGER NOT NULL DEFAULT 1,
    attributes TEXT NOT NULL DEFAULT '{}',
    deleted INTEGER NOT NULL DEFAULT 0,
    seq INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_products_seq ON idx_products(seq);
-- rowid is the vector id used in snapshots: stable for the life of the row.
CREATE TABLE IF NOT EXISTS idx_images (
    vid INTEGER PRIMARY KEY AUTOINCREMENT,
    image_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    source TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    position INTEGER NOT NULL DEFAULT 0,
    deleted INTEGER NOT NULL DEFAULT 0,
    seq INTEGER NOT NULL,
    UNIQUE (product_id, image_id)
);
CREATE INDEX IF NOT EXISTS idx_images_seq ON idx_images(seq);
CREATE INDEX IF NOT EXISTS idx_images_image_id ON idx_images(image_id);
CREATE TABLE IF NOT EXISTS idx_embeddings (
    model TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    dim INTEGER NOT NULL,
    vector BLOB NOT NULL,
    written_at REAL,  -- unix time; NULL on rows older than the column
    PRIMARY KEY (model, sha256)
) WITHOUT ROWID;
-- (path, size, mtime) -> sha256, so an unchanged file is not even read again.
CREATE TABLE IF NOT EXISTS idx_sources (
    source TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL
) WITHOUT ROWID;
"""


def image_id_for(sha256: str) -> str:
    """Public, content-addressed image id: the first 20 hex chars of the sha256."""
    return sha256[:IMAGE_ID_HEX]


def photo_path(data_dir: Path, sha256: str) -> Path:
    """Where the re-encoded catalog photo of these source bytes is kept."""
    return data_dir / "images" / sha256[:2] / f"{sha256}.jpg"


@dataclass(frozen=True)
class StoredImage:
    """An image row as the live index needs it."""

    vid: int
    image_id: str
    product_id: str
    source: str
    sha256: str
    position: int
    deleted: bool
    seq: int

    def record(self) -> ImageRecord:
        return ImageRecord(self.image_id, self.product_id, self.source, self.sha256)


@dataclass(frozen=True)
class EmbeddingStat:
    """The embedding rows of one sha256 (all models), for garbage collection."""

    rows: int
    bytes: int
    written_at: float  # the newest row's; 0 for rows older than the column


@dataclass(frozen=True)
class NewImage:
    """An image to attach to a product: its source and the sha256 of its bytes."""

    source: str
    sha256: str


ProductChange = tuple[ProductRecord, Sequence[NewImage], bool]


@dataclass(frozen=True)
class CatalogPlan:
    """A re-index run's catalog changes, worked out against the store but not committed.

    ``images`` is every live image row as it will be once the plan is
    committed (new rows with the vids reserved for them); the run's snapshot
    is built from it. ``products``/``delete_ids`` are what the commit applies.
    """

    base_seq: int  # the store's seq the plan was worked out against
    products: tuple[ProductChange, ...]
    delete_ids: tuple[str, ...]
    new_vids: Mapping[tuple[str, str], int]  # (product_id, image_id) -> reserved vid
    images: tuple[StoredImage, ...]
    # What the commit will do if nothing else writes meanwhile: rows
    # upserted (products and images) and products deleted.
    changed: int
    removed: int


def _product_from_row(row: sqlite3.Row) -> ProductRecord:
    return ProductRecord(
        product_id=row["product_id"],
        title=row["title"],
        category=row["category"],
        description=row["description"],
        url=row["url"],
        price=row["price"],
        currency=row["currency"],
        in_stock=bool(row["in_stock"]),
        attributes=json.loads(row["attributes"]),
    )


def _image_from_row(row: sqlite3.Row) -> StoredImage:
    return StoredImage(
        vid=int(row["vid"]),
        image_id=row["image_id"],
        product_id=row["product_id"],
        source=row["source"],
        sha256=row["sha256"],
        position=int(row["position"]),
        deleted=bool(row["deleted"]),
        seq=int(row["seq"]),
    )


def _product_values(p: ProductRecord) -> tuple[Any, ...]:
    return (
        p.title,
        p.category,
        p.description,
        p.url,
        p.price,
        p.currency,
        int(p.in_stock),
        json.dumps(p.attributes, sort_keys=True, ensure_ascii=False),
    )


class CatalogStore:
    """Thread-safe access to the indexer's tables (one connection, one lock).

    WAL mode lets readers in other processes (the service, ``shoplens search``)
    go on while an indexing run writes; ``busy_timeout`` waits out other
    writers (other parts share the file) instead of failing.
    """

    def __init__(self, db_path: Path, *, timeout_s: float = 30.0) -> None:
        db_path.parent.mkdir(parents=True, exist_ok=True)
        self.path = db_path
        self._plan: CatalogPlan | None = None  # set on a view made by planned()
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(
            db_path, timeout=timeout_s, isolation_level=None, check_same_thread=False
        )
        self._conn.row_factory = sqlite3.Row
        self._conn.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
        self._conn.execute("PRAGMA journal_mode = WAL")
        # FULL: an acknowledged write (a PUT, a committed batch) survives power loss.
        self._conn.execute("PRAGMA synchronous = FULL")
        self._conn.executescript(_SCHEMA)
        _add_column(self._conn, "idx_embeddings", "written_at", "REAL")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> CatalogStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``): all or nothing."""
        return write_transaction(self._conn, self._lock)

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A consistent read view (one deferred transaction)."""
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                yield self._conn
            finally:
                self._conn.execute("COMMIT")

    # -- change sequence ---------------------------------------------------

    def seq(self) -> int:
        with self._lock:
            return _get_seq(self._conn)

    # -- embeddings ----------------------------------------------------------

    def embedded_shas(self, model: str, shas: Iterable[str]) -> set[str]:
        """The subset of ``shas`` that already has an embedding for ``model``."""
        wanted = list(dict.fromkeys(shas))
        found: set[str] = set()
        with self._lock:
            for i in range(0, len(wanted), 500):
                chunk = wanted[i : i + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(
                    f"SELECT sha256 FROM idx_embeddings WHERE model = ? AND sha256 IN ({marks})",
                    (model, *chunk),
                )
                found.update(r[0] for r in rows)
        return found

    def embedded_shas_all(self, model: str) -> set[str]:
        """Every sha256 that has an embedding for ``model``."""
        with self._lock:
            rows = self._conn.execute("SELECT sha256 FROM idx_embeddings WHERE model = ?", (model,))
            return {r[0] for r in rows}

    def count_embeddings(self, model: str) -> int:
        with self._lock:
            row = self._conn.execute(
                "SELECT COUNT(*) FROM idx_embeddings WHERE model = ?", (model,)
            ).fetchone()
        return int(row[0])

    def put_embeddings(
        self,
        model: str,
        items: Sequence[tuple[str, NDArray[np.float32]]],
        sources: Sequence[tuple[str, int, int, str]] = (),
    ) -> None:
        """Commit a batch of ``(sha256, vector)`` (+ source cache rows) in one transaction."""
        with self.transaction() as c:
            now = time.time()
            c.executemany(
                "INSERT OR REPLACE INTO idx_embeddings(model, sha256, dim, vector, written_at) "
                "VALUES (?, ?, ?, ?, ?)",
                [
                    (
                        model,
                        sha,
                        int(v.shape[0]),
                        np.ascontiguousarray(v, np.float32).tobytes(),
                        now,
                    )
                    for sha, v in items
                ],
            )
            c.executemany(
                "INSERT OR REPLACE INTO idx_sources(source, size, mtime_ns, sha256) "
                "VALUES (?, ?, ?, ?)",
                list(sources),
            )

    def get_embeddings(self, model: str, shas: Sequence[str]) -> dict[str, NDArray[np.float32]]:
        out: dict[str, NDArray[np.float32]] = {}
        wanted = list(dict.fromkeys(shas))
        with self._lock:
            for i in range(0, len(wanted), 500):
                chunk = wanted[i : i + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(
                    "SELECT sha256, vector FROM idx_embeddings "
                    f"WHERE model = ? AND sha256 IN ({marks})",
                    (model, *chunk),
                )
                for sha, blob in rows:
                    out[sha] = np.frombuffer(blob, dtype=np.float32).copy()
        return out

    def put_sources(self, rows: Sequence[tuple[str, int, int, str]]) -> None:
        with self.transaction() as c:
            c.executemany(
                "INSERT OR REPLACE INTO idx_sources(source, size, mtime_ns, sha256) "
                "VALUES (?, ?, ?, ?)",
                list(rows),
            )

    def cached_sha(self, source: str, size: int, mtime_ns: int) -> str | None:
        """sha256 recorded for this file if its size and mtime are unchanged."""
        with self._lock:
            row = self._conn.execute(
                "SELECT sha256 FROM idx_sources WHERE source = ? AND size = ? AND mtime_ns = ?",
                (source, size, mtime_ns),
            ).fetchone()
        return None if row is None else str(row[0])

    # -- products and images ---------------------------------------------------

    def upsert_products(
        self,
        products: Sequence[tuple[ProductRecord, Sequence[NewImage], bool]],
    ) -> int:
        """Create or update products with their image sets in one transaction.

        Each item is ``(product, images, replace_images)``: with
        ``replace_images`` the product's images not in ``images`` are deleted;
        without it they are kept (a row of the product was rejected, and a
        bad row never removes what was indexed before). Rows that do not
        change keep their ``seq``. Returns the number of rows changed.
        """
        changed = 0
        with self.transaction() as c:
            seq = _get_seq(c) + 1
            for product, images, replace in products:
                changed += _upsert_one(c, seq, product, images, replace)
            if changed:
                _set_seq(c, seq)
        return changed

    def delete_products(self, product_ids: Iterable[str]) -> int:
        """Mark products (and their images) deleted; returns how many were live."""
        ids = list(product_ids)
        with self.transaction() as c:
            seq = _get_seq(c) + 1
            n = _delete_many(c, seq, ids)
            if n:
                _set_seq(c, seq)
        return n

    # -- re-index runs: plan, build from the plan, commit -------------------------

    def plan_catalog(
        self, products: Sequence[ProductChange], *, prune_keep: set[str] | None = None
    ) -> CatalogPlan:
        """Work out what ``upsert_products(products)`` (then, with ``prune_keep``,
        deleting every live product not in it) would do, without doing it.

        The changes are applied inside a savepoint with the very code that will
        commit them, read back, and rolled back; only the vids the new image
        rows got are kept, reserved in ``sqlite_sequence`` so that no other
        writer takes them before :meth:`commit_plan` inserts the rows with them.
        No products/images row and not the change seq is modified, so nobody
        (a live index polling the seq included) sees anything of the plan.
        """
        items = tuple((p, tuple(imgs), replace) for p, imgs, replace in products)
        with self.transaction() as c:
            base = _get_seq(c)
            top = int(c.execute("SELECT COALESCE(MAX(vid), 0) FROM idx_images").fetchone()[0])
            c.execute("SAVEPOINT plan")
            try:
                seq = base + 1
                changed = sum(_upsert_one(c, seq, p, imgs, r) for p, imgs, r in items)
                delete_ids: tuple[str, ...] = ()
                if prune_keep is not None:
                    live = {r[0] for r in c.execute(_LIVE_PRODUCTS)}
                    delete_ids = tuple(sorted(live - prune_keep))
                removed = _delete_many(c, seq, delete_ids)
                rows = c.execute("SELECT * FROM idx_images WHERE deleted = 0 ORDER BY vid")
                images = tuple(_image_from_row(r) for r in rows)
                new_vids = {
                    (r[1], r[2]): int(r[0])
                    for r in c.execute(
                        "SELECT vid, product_id, image_id FROM idx_images WHERE vid > ?", (top,)
                    )
                }
            finally:
                c.execute("ROLLBACK TO plan")
                c.execute("RELEASE plan")
            if new_vids:
                _reserve_vids(c, max(new_vids.values()))
        return CatalogPlan(
            base_seq=base,
            products=items,
            delete_ids=delete_ids,
            new_vids=new_vids,
            images=images,
            changed=changed,
            removed=removed,
        )

    def planned(self, plan: CatalogPlan) -> CatalogStore:
        """This store (same connection: do not close it) whose :meth:`live_vectors`
        answers as if ``plan`` were committed: what the run's snapshot is built from."""
        view = copy.copy(self)
        view._plan = plan
        return view

    def commit_plan(self, plan: CatalogPlan) -> tuple[int, int]:
        """Apply a plan in one transaction; ``(rows upserted, products removed)``.

        New image rows get the vids the plan reserved, so they match the
        snapshot built from it. A product some other writer (a PUT or DELETE
        through the service) touched after the plan was made is left as that
        writer left it: its edit is newer than the run's manifest.
        """
        with self.transaction() as c:
            now = _get_seq(c)
            newer: set[str] = set()
            if now != plan.base_seq:
                newer = {r[0] for r in c.execute(_TOUCHED_SINCE, (plan.base_seq, plan.base_seq))}
            seq = now + 1
            changed = sum(
                _upsert_one(c, seq, p, imgs, replace, vids=plan.new_vids)
                for p, imgs, replace in plan.products
                if p.product_id not in newer
            )
            removed = _delete_many(c, seq, [pid for pid in plan.delete_ids if pid not in newer])
            if changed or removed:
                _set_seq(c, seq)
        return changed, removed

    def live_product_ids(self) -> set[str]:
        with self._lock:
            rows = self._conn.execute(_LIVE_PRODUCTS)
            return {r[0] for r in rows}

    def get_product(self, product_id: str) -> tuple[ProductRecord, list[StoredImage]] | None:
        """The live product and its live images, or None if unknown or deleted."""
        with self.read() as c:
            row = c.execute(
                "SELECT * FROM idx_products WHERE product_id = ? AND deleted = 0", (product_id,)
            ).fetchone()
            if row is None:
                return None
            imgs = c.execute(
                "SELECT * FROM idx_images WHERE product_id = ? AND deleted = 0 "
                "ORDER BY position, vid",
                (product_id,),
            ).fetchall()
        return _product_from_row(row), [_image_from_row(r) for r in imgs]

    def find_image(self, image_id: str) -> StoredImage | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT * FROM idx_images WHERE image_id = ? ORDER BY deleted, vid DESC LIMIT 1",
                (image_id,),
            ).fetchone()
        return None if row is None else _image_from_row(row)

    def load_catalog(
        self,
    ) -> tuple[int, list[ProductRecord], list[StoredImage]]:
        """``(seq, live products, live images)`` read in one consistent view."""
        with self.read() as c:
            seq = _get_seq(c)
            prows = c.execute("SELECT * FROM idx_products WHERE deleted = 0").fetchall()
            irows = c.execute("SELECT * FROM idx_images WHERE deleted = 0 ORDER BY vid").fetchall()
        return seq, [_product_from_row(r) for r in prows], [_image_from_row(r) for r in irows]

    def live_vectors(self, model: str) -> tuple[int, list[StoredImage], NDArray[np.float32] | None]:
        """``(seq, live images that have an embedding, their vectors)`` in one view.

        On a :meth:`planned` view: the catalog as the plan will commit it, with
        the plan's ``base_seq`` (the catalog is that seq's plus the plan, so
        every row with a later seq is still to be applied over it).
        """
        if self._plan is not None:
            return self._planned_vectors(self._plan, model)
        images: list[StoredImage] = []
        blobs: list[bytes] = []
        with self.read() as c:
            seq = _get_seq(c)
            rows = c.execute(
                "SELECT i.*, e.vector AS vector FROM idx_images i JOIN idx_embeddings e "
                "ON e.model = ? AND e.sha256 = i.sha256 WHERE i.deleted = 0 ORDER BY i.vid",
                (model,),
            )
            for r in rows:
                images.append(_image_from_row(r))
                blobs.append(r["vector"])
        if not blobs:
            return seq, images, None
        vectors = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), -1)
        return seq, images, vectors.copy()

    def _planned_vectors(
        self, plan: CatalogPlan, model: str
    ) -> tuple[int, list[StoredImage], NDArray[np.float32] | None]:
        # Embeddings are never changed for a (model, sha256), so reading them
        # outside the plan's transaction reads what it saw.
        vecs = self.get_embeddings(model, [im.sha256 for im in plan.images])
        images = [im for im in plan.images if im.sha256 in vecs]
        if not images:
            return plan.base_seq, images, None
        out = np.empty((len(images), len(vecs[images[0].sha256])), dtype=np.float32)
        for i, im in enumerate(images):
            out[i] = vecs[im.sha256]
        return plan.base_seq, images, out

    def changes_since(
        self, seq: int
    ) -> tuple[int, dict[str, tuple[ProductRecord | None, list[StoredImage]]]]:
        """Products touched after ``seq`` (their row or one of their images changed).

        Returns ``(current seq, {product_id: (live product or None if deleted,
        its live images)})`` read in one consistent view.
        """
        out: dict[str, tuple[ProductRecord | None, list[StoredImage]]] = {}
        with self.read() as c:
            now = _get_seq(c)
            pids = [
                r[0]
                for r in c.execute(
                    "SELECT product_id FROM idx_products WHERE seq > ? "
                    "UNION SELECT product_id FROM idx_images WHERE seq > ?",
                    (seq, seq),
                )
            ]
            for pid in pids:
                row = c.execute(
                    "SELECT * FROM idx_products WHERE product_id = ? AND deleted = 0", (pid,)
                ).fetchone()
                imgs = c.execute(
                    "SELECT * FROM idx_images WHERE product_id = ? AND deleted = 0 "
                    "ORDER BY position, vid",
                    (pid,),
                ).fetchall()
                product = None if row is None else _product_from_row(row)
                out[pid] = (product, [_image_from_row(r) for r in imgs] if product else [])
        return now, out

    def counts(self) -> dict[str, int]:
        with self.read() as c:
            p = c.execute("SELECT COUNT(*) FROM idx_products WHERE deleted = 0").fetchone()[0]
            i = c.execute("SELECT COUNT(*) FROM idx_images WHERE deleted = 0").fetchone()[0]
        return {"products": int(p), "images": int(i)}

    # -- garbage collection (shoplens.indexer.ops.gc) ---------------------------------

    def live_shas(self) -> set[str]:
        """The sha256 of every live image row (all products, all models)."""
        with self._lock:
            rows = self._conn.execute("SELECT DISTINCT sha256 FROM idx_images WHERE deleted = 0")
            return {r[0] for r in rows}

    def embedding_stats(self) -> dict[str, EmbeddingStat]:
        """Per sha256: its embedding rows (every model), their bytes, the newest write."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT sha256, COUNT(*), SUM(LENGTH(vector)), MAX(COALESCE(written_at, 0)) "
                "FROM idx_embeddings GROUP BY sha256"
            )
            return {r[0]: EmbeddingStat(int(r[1]), int(r[2]), float(r[3])) for r in rows}

    def collect(
        self,
        shas: Sequence[str],
        *,
        written_before: float,
        remove_files: Callable[[list[str]], list[str]],
    ) -> tuple[list[str], int, int]:
        """Delete the embedding and source-cache rows of the ``shas`` that are orphans.

        In one write transaction, so no image row can be committed meanwhile:
        of ``shas``, those no live image row uses *now* and whose every
        embedding was written before ``written_before`` go to ``remove_files``
        (which deletes their photos under the same write lock and returns the
        shas it collected); their embedding and source-cache rows are then
        deleted. A writer that embedded one of them after ``written_before``
        (a PUT of the same bytes) keeps it; one committing an image row waits
        for this transaction, then sees what it left.
        Returns ``(shas collected, embedding rows deleted, their vector bytes)``.
        """
        wanted = list(dict.fromkeys(shas))
        if not wanted:
            return [], 0, 0
        marks = ",".join("?" * len(wanted))
        with self.transaction() as c:
            used = {
                r[0]
                for r in c.execute(
                    f"SELECT sha256 FROM idx_images WHERE deleted = 0 AND sha256 IN ({marks})",
                    wanted,
                )
            }
            fresh = {
                r[0]
                for r in c.execute(
                    f"SELECT sha256 FROM idx_embeddings WHERE sha256 IN ({marks}) "
                    "AND written_at >= ?",
                    (*wanted, written_before),
                )
            }
            doomed = remove_files([s for s in wanted if s not in used and s not in fresh])
            if not doomed:
                return [], 0, 0
            marks = ",".join("?" * len(doomed))
            n, size = c.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(vector)), 0) FROM idx_embeddings "
                f"WHERE sha256 IN ({marks})",
                doomed,
            ).fetchone()
            c.execute(f"DELETE FROM idx_embeddings WHERE sha256 IN ({marks})", doomed)
            c.execute(f"DELETE FROM idx_sources WHERE sha256 IN ({marks})", doomed)
        return doomed, int(n), int(size)


_LIVE_PRODUCTS = "SELECT product_id FROM idx_products WHERE deleted = 0"
# Products whose row or one of whose image rows changed after a seq.
_TOUCHED_SINCE = (
    "SELECT product_id FROM idx_products WHERE seq > ? "
    "UNION SELECT product_id FROM idx_images WHERE seq > ?"
)


def _add_column(c: sqlite3.Connection, table: str, column: str, decl: str) -> None:
    """Add a column an older database lacks (another process may add it first)."""
    if any(r[1] == column for r in c.execute(f"PRAGMA table_info({table})")):
        return
    try:
        c.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
    except sqlite3.OperationalError:
        if not any(r[1] == column for r in c.execute(f"PRAGMA table_info({table})")):
            raise


def _get_seq(c: sqlite3.Connection) -> int:
    row = c.execute("SELECT value FROM idx_meta WHERE key = 'seq'").fetchone()
    return 0 if row is None else int(row[0])


def _set_seq(c: sqlite3.Connection, seq: int) -> None:
    c.execute("INSERT OR REPLACE INTO idx_meta(key, value) VALUES ('seq', ?)", (str(seq),))


def _reserve_vids(c: sqlite3.Connection, top: int) -> None:
    """AUTOINCREMENT hands out vids above ``top`` from now on (SQLite documents
    ``sqlite_sequence`` as writable for exactly this)."""
    cur = c.execute(
        "UPDATE sqlite_sequence SET seq = MAX(seq, ?) WHERE name = 'idx_images'", (top,)
    )
    if cur.rowcount == 0:
        c.execute("INSERT INTO sqlite_sequence(name, seq) VALUES ('idx_images', ?)", (top,))


def _delete_many(c: sqlite3.Connection, seq: int, product_ids: Iterable[str]) -> int:
    n = 0
    for pid in product_ids:
        cur = c.execute(
            "UPDATE idx_products SET deleted = 1, seq = ? WHERE product_id = ? AND deleted = 0",
            (seq, pid),
        )
        if cur.rowcount:
            n += 1
            c.execute(
                "UPDATE idx_images SET deleted = 1, seq = ? WHERE product_id = ? AND deleted = 0",
                (seq, pid),
            )
    return n


def _upsert_one(
    c: sqlite3.Connection,
    seq: int,
    product: ProductRecord,
    images: Sequence[NewImage],
    replace: bool,
    *,
    vids: Mapping[tuple[str, str], int] | None = None,
) -> int:
    """``vids``: the vid a new image row must get (reserved by a plan), by
    ``(product_id, image_id)``; other new rows get the next AUTOINCREMENT one."""
    changed = 0
    values = _product_values(product)
    row = c.execute(
        "SELECT title, category, description, url, price, currency, in_stock, attributes, "
        "deleted FROM idx_products WHERE product_id = ?",
        (product.product_id,),
    ).fetchone()
    if row is None:
        c.execute(
            "INSERT INTO idx_products(product_id, title, category, description, url, price, "
            "currency, in_stock, attributes, deleted, seq) VALUES (?,?,?,?,?,?,?,?,?,0,?)",
            (product.product_id, *values, seq),
        )
        changed += 1
    elif tuple(row)[:8] != values or row["deleted"]:
        c.execute(
            "UPDATE idx_products SET title=?, category=?, description=?, url=?, price=?, "
            "currency=?, in_stock=?, attributes=?, deleted=0, seq=? WHERE product_id=?",
            (*values, seq, product.product_id),
        )
        changed += 1

    existing = {
        r["image_id"]: r
        for r in c.execute(
            "SELECT vid, image_id, source, position, deleted FROM idx_images WHERE product_id = ?",
            (product.product_id,),
        )
    }
    keep: set[str] = set()
    for pos, img in enumerate(images):
        iid = image_id_for(img.sha256)
        if iid in keep:
            continue  # the same bytes twice for one product: one vector is enough
        keep.add(iid)
        old = existing.get(iid)
        if old is None:
            vid = None if vids is None else vids.get((product.product_id, iid))
            c.execute(
                "INSERT INTO idx_images(vid, image_id, product_id, source, sha256, position, "
                "deleted, seq) VALUES (?,?,?,?,?,?,0,?)",
                (vid, iid, product.product_id, img.source, img.sha256, pos, seq),
            )
            changed += 1
        elif old["deleted"] or old["source"] != img.source or old["position"] != pos:
            c.execute(
                "UPDATE idx_images SET source=?, position=?, deleted=0, seq=? WHERE vid=?",
                (img.source, pos, seq, old["vid"]),
            )
            changed += 1
    if replace:
        for iid, old in existing.items():
            if iid not in keep and not old["deleted"]:
                c.execute("UPDATE idx_images SET deleted=1, seq=? WHERE vid=?", (seq, old["vid"]))
                changed += 1
    return changed
