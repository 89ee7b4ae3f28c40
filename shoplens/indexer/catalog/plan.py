"""A re-index run's catalog changes: worked out first, committed after its snapshot.

Image rows are vector ids (``vid``): a vid is never reused and never changes
its bytes, which is what lets a snapshot and the rows disagree safely (the live
index trusts the rows and takes a vector from the snapshot only for a vid that
is live in both). A run uses that to publish its snapshot *before* its rows
become visible: :func:`plan_catalog` works its changes out and reserves the
vids of its new image rows without changing a row, the snapshot is built from
the catalog as the plan will leave it (:func:`planned_vectors`), and
:func:`commit_plan` writes the rows with exactly those vids (see
``shoplens.indexer.ops.build`` for the order and why).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from shoplens.db import Conn
from shoplens.indexer.catalog.connection import CatalogConnection
from shoplens.indexer.catalog.embeddings import get_embeddings
from shoplens.indexer.catalog.rows import (
    LIVE_PRODUCTS,
    TOUCHED_SINCE,
    delete_many,
    get_seq,
    image_from_row,
    set_seq,
    upsert_one,
)
from shoplens.indexer.catalog.types import ProductChange, StoredImage


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


def plan_catalog(
    db: CatalogConnection, products: Sequence[ProductChange], prune_keep: set[str] | None
) -> CatalogPlan:
    """The changes are applied inside a savepoint with the very code that will
    commit them, read back, and rolled back; only the vids the new image rows
    got are kept, reserved (:func:`_reserve_vids`) so that no other writer takes
    them before :func:`commit_plan` inserts the rows with them. No
    products/images row and not the change seq is modified, so nobody (a live
    index polling the seq included) sees anything of the plan.
    """
    items = tuple((p, tuple(imgs), replace) for p, imgs, replace in products)
    with db.transaction() as c:
        base = get_seq(c)
        top = int(c.execute("SELECT COALESCE(MAX(vid), 0) FROM idx_images").fetchone()[0])
        c.execute("SAVEPOINT catalog_plan")
        try:
            seq = base + 1
            changed = sum(upsert_one(c, seq, p, imgs, r) for p, imgs, r in items)
            delete_ids: tuple[str, ...] = ()
            if prune_keep is not None:
                live = {r[0] for r in c.execute(LIVE_PRODUCTS)}
                delete_ids = tuple(sorted(live - prune_keep))
            removed = delete_many(c, seq, delete_ids)
            rows = c.execute("SELECT * FROM idx_images WHERE deleted = 0 ORDER BY vid")
            images = tuple(image_from_row(r) for r in rows)
            new_vids = {
                (r[1], r[2]): int(r[0])
                for r in c.execute(
                    "SELECT vid, product_id, image_id FROM idx_images WHERE vid > ?", (top,)
                )
            }
        finally:
            c.execute("ROLLBACK TO SAVEPOINT catalog_plan")
            c.execute("RELEASE SAVEPOINT catalog_plan")
        if new_vids:
            _reserve_vids(c, db.is_postgres, max(new_vids.values()))
    return CatalogPlan(
        base_seq=base,
        products=items,
        delete_ids=delete_ids,
        new_vids=new_vids,
        images=images,
        changed=changed,
        removed=removed,
    )


def planned_vectors(
    db: CatalogConnection, plan: CatalogPlan, model: str
) -> tuple[int, list[StoredImage], NDArray[np.float32] | None]:
    """``(seq, live images that have an embedding, their vectors)`` of the catalog
    as ``plan`` will commit it, with the plan's ``base_seq`` (the catalog is that
    seq's plus the plan, so every row with a later seq is still to be applied
    over it).
    """
    # Embeddings are never changed for a (model, sha256), so reading them
    # outside the plan's transaction reads what it saw.
    vecs = get_embeddings(db, model, [im.sha256 for im in plan.images])
    images = [im for im in plan.images if im.sha256 in vecs]
    if not images:
        return plan.base_seq, images, None
    out = np.empty((len(images), len(vecs[images[0].sha256])), dtype=np.float32)
    for i, im in enumerate(images):
        out[i] = vecs[im.sha256]
    return plan.base_seq, images, out


def commit_plan(db: CatalogConnection, plan: CatalogPlan) -> tuple[int, int]:
    """Apply a plan in one transaction; ``(rows upserted, products removed)``.

    New image rows get the vids the plan reserved, so they match the snapshot
    built from it. A product some other writer (a PUT or DELETE through the
    service) touched after the plan was made is left as that writer left it:
    its edit is newer than the run's manifest.
    """
    with db.transaction(changes=True) as c:
        now = get_seq(c)
        newer: set[str] = set()
        if now != plan.base_seq:
            newer = {r[0] for r in c.execute(TOUCHED_SINCE, (plan.base_seq, plan.base_seq))}
        seq = now + 1
        changed = sum(
            upsert_one(c, seq, p, imgs, replace, vids=plan.new_vids)
            for p, imgs, replace in plan.products
            if p.product_id not in newer
        )
        removed = delete_many(c, seq, [pid for pid in plan.delete_ids if pid not in newer])
        if changed or removed:
            set_seq(c, seq)
    return changed, removed


def _reserve_vids(c: Conn, is_postgres: bool, top: int) -> None:
    """New image rows get vids above ``top`` from now on.

    SQLite: AUTOINCREMENT's counter is moved (SQLite documents
    ``sqlite_sequence`` as writable for exactly this). PostgreSQL: the identity
    sequence already handed out the vids inside the rolled-back savepoint
    (sequences are not transactional); it is moved past ``top`` anyway, so the
    reservation holds however those vids came about.
    """
    if is_postgres:
        c.execute(
            "SELECT setval(pg_get_serial_sequence('idx_images', 'vid'), "
            "GREATEST(?, nextval(pg_get_serial_sequence('idx_images', 'vid'))))",
            (top,),
        )
        return
    cur = c.execute(
        "UPDATE sqlite_sequence SET seq = MAX(seq, ?) WHERE name = 'idx_images'", (top,)
    )
    if cur.rowcount == 0:
        c.execute("INSERT INTO sqlite_sequence(name, seq) VALUES ('idx_images', ?)", (top,))
