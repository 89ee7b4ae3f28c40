"""Reading the catalog: one product, one image, the whole live catalog (with its
vectors, for a snapshot), what changed after a seq, and counts.

A read of several statements runs in one read view, so it sees one catalog;
turning rows into records happens after the view ends, so a large catalog
does not hold the connection meanwhile.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from shoplens.indexer.catalog.connection import CatalogConnection
from shoplens.indexer.catalog.rows import (
    LIVE_PRODUCTS,
    SNAPSHOT_KEY,
    TOUCHED_SINCE,
    get_seq,
    image_from_row,
    product_from_row,
)
from shoplens.indexer.catalog.types import ProductRecord, StoredImage

_LIVE_PRODUCT = "SELECT * FROM idx_products WHERE product_id = ? AND deleted = 0"
_LIVE_IMAGES_OF = (
    "SELECT * FROM idx_images WHERE product_id = ? AND deleted = 0 ORDER BY position, vid"
)


def current_seq(db: CatalogConnection) -> int:
    with db.locked() as c:
        return get_seq(c)


def snapshot_pointer(db: CatalogConnection) -> str | None:
    with db.locked() as c:
        row = c.execute("SELECT value FROM idx_meta WHERE key = ?", (SNAPSHOT_KEY,)).fetchone()
    return None if row is None or not row[0] else str(row[0])


def live_product_ids(db: CatalogConnection) -> set[str]:
    with db.locked() as c:
        rows = c.execute(LIVE_PRODUCTS)
        return {r[0] for r in rows}


def get_product(
    db: CatalogConnection, product_id: str
) -> tuple[ProductRecord, list[StoredImage]] | None:
    with db.read() as c:
        row = c.execute(_LIVE_PRODUCT, (product_id,)).fetchone()
        if row is None:
            return None
        imgs = c.execute(_LIVE_IMAGES_OF, (product_id,)).fetchall()
    return product_from_row(row), [image_from_row(r) for r in imgs]


def find_image(db: CatalogConnection, image_id: str) -> StoredImage | None:
    with db.locked() as c:
        row = c.execute(
            "SELECT * FROM idx_images WHERE image_id = ? ORDER BY deleted, vid DESC LIMIT 1",
            (image_id,),
        ).fetchone()
    return None if row is None else image_from_row(row)


def load_catalog(db: CatalogConnection) -> tuple[int, list[ProductRecord], list[StoredImage]]:
    with db.read() as c:
        seq = get_seq(c)
        prows = c.execute("SELECT * FROM idx_products WHERE deleted = 0").fetchall()
        irows = c.execute("SELECT * FROM idx_images WHERE deleted = 0 ORDER BY vid").fetchall()
    return seq, [product_from_row(r) for r in prows], [image_from_row(r) for r in irows]


def live_vectors(
    db: CatalogConnection, model: str
) -> tuple[int, list[StoredImage], NDArray[np.float32] | None]:
    images: list[StoredImage] = []
    blobs: list[bytes] = []
    with db.read() as c:
        seq = get_seq(c)
        rows = c.execute(
            "SELECT i.*, e.vector AS vector FROM idx_images i JOIN idx_embeddings e "
            "ON e.model = ? AND e.sha256 = i.sha256 WHERE i.deleted = 0 ORDER BY i.vid",
            (model,),
        )
        for r in rows:
            images.append(image_from_row(r))
            blobs.append(r["vector"])
    if not blobs:
        return seq, images, None
    vectors = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), -1)
    return seq, images, vectors.copy()


def changes_since(
    db: CatalogConnection, seq: int
) -> tuple[int, dict[str, tuple[ProductRecord | None, list[StoredImage]]]]:
    out: dict[str, tuple[ProductRecord | None, list[StoredImage]]] = {}
    with db.read() as c:
        now = get_seq(c)
        pids = [r[0] for r in c.execute(TOUCHED_SINCE, (seq, seq))]
        for pid in pids:
            row = c.execute(_LIVE_PRODUCT, (pid,)).fetchone()
            imgs = c.execute(_LIVE_IMAGES_OF, (pid,)).fetchall()
            product = None if row is None else product_from_row(row)
            out[pid] = (product, [image_from_row(r) for r in imgs] if product else [])
    return now, out


def counts(db: CatalogConnection) -> dict[str, int]:
    with db.read() as c:
        p = c.execute("SELECT COUNT(*) FROM idx_products WHERE deleted = 0").fetchone()[0]
        i = c.execute("SELECT COUNT(*) FROM idx_images WHERE deleted = 0").fetchone()[0]
    return {"products": int(p), "images": int(i)}
