"""Product and image rows, and the change sequence that stamps them.

Every catalog change takes the next value of one monotonically increasing
sequence and stamps it on the rows it touched, so a snapshot built at
sequence S plus every row with ``seq > S`` is the current catalog. Rows are
never deleted, only marked ``deleted``: an image row's ``vid`` is a vector id
and is never reused.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from shoplens.db import Conn
from shoplens.errors import BadParameter
from shoplens.indexer.catalog.connection import CatalogConnection
from shoplens.indexer.catalog.photos import image_id_for
from shoplens.indexer.catalog.types import NewImage, ProductChange, ProductRecord, StoredImage

LIVE_PRODUCTS = "SELECT product_id FROM idx_products WHERE deleted = 0"
# Products whose row or one of whose image rows changed after a seq.
TOUCHED_SINCE = (
    "SELECT product_id FROM idx_products WHERE seq > ? "
    "UNION SELECT product_id FROM idx_images WHERE seq > ?"
)
_INSERT_IMAGE = (
    "INSERT INTO idx_images({vid}image_id, product_id, source, sha256, position, deleted, seq) "
    "VALUES ({mark}?,?,?,?,?,0,?)"
)


def get_seq(c: Conn) -> int:
    row = c.execute("SELECT value FROM idx_meta WHERE key = 'seq'").fetchone()
    return 0 if row is None else int(row[0])


def set_seq(c: Conn, seq: int) -> None:
    c.execute(
        "INSERT INTO idx_meta(key, value) VALUES ('seq', ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (str(seq),),
    )


def product_from_row(row: Any) -> ProductRecord:
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


def image_from_row(row: Any) -> StoredImage:
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


def _check_text(p: ProductRecord) -> None:
    """PostgreSQL's text cannot hold a NUL character (SQLite's can): refused on
    both engines, so a catalog behaves the same whichever it is stored in."""
    texts = [p.title, p.category, p.description, p.url, p.currency]
    texts += [*p.attributes.keys(), *p.attributes.values()]
    if any(t is not None and "\x00" in t for t in texts):
        raise BadParameter(f"product {p.product_id!r}: a text field contains a NUL character")


def _product_values(p: ProductRecord) -> tuple[Any, ...]:
    _check_text(p)
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


def delete_many(c: Conn, seq: int, product_ids: Iterable[str]) -> int:
    """Mark live products and their images deleted at ``seq``; how many were live."""
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


def upsert_one(
    c: Conn,
    seq: int,
    product: ProductRecord,
    images: Sequence[NewImage],
    replace: bool,
    *,
    vids: Mapping[tuple[str, str], int] | None = None,
) -> int:
    """Write one product and its images at ``seq``; the number of rows changed.

    Rows that do not change keep their ``seq``. ``vids``: the vid a new image
    row must get (reserved by a plan), by ``(product_id, image_id)``; other new
    rows get the next one (AUTOINCREMENT on SQLite, identity on PostgreSQL).
    """
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
            row_values = (iid, product.product_id, img.source, img.sha256, pos, seq)
            if vid is None:  # the next one (PostgreSQL refuses an explicit NULL)
                c.execute(_INSERT_IMAGE.format(vid="", mark=""), row_values)
            else:
                c.execute(_INSERT_IMAGE.format(vid="vid, ", mark="?,"), (vid, *row_values))
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


def upsert_products(db: CatalogConnection, products: Sequence[ProductChange]) -> int:
    """Write the products at the next seq in one transaction (the seq is taken
    only if a row changed); the number of rows changed."""
    changed = 0
    with db.transaction(changes=True) as c:
        seq = get_seq(c) + 1
        for product, images, replace in products:
            changed += upsert_one(c, seq, product, images, replace)
        if changed:
            set_seq(c, seq)
    return changed


def delete_products(db: CatalogConnection, product_ids: Iterable[str]) -> int:
    """Delete the products at the next seq in one transaction (the seq is taken
    only if one was live); how many were live."""
    ids = list(product_ids)
    with db.transaction(changes=True) as c:
        seq = get_seq(c) + 1
        n = delete_many(c, seq, ids)
        if n:
            set_seq(c, seq)
    return n


SNAPSHOT_KEY = "current_snapshot"


def set_snapshot_pointer(db: CatalogConnection, snapshot_id: str) -> None:
    with db.transaction(changes=True) as c:
        c.execute(
            "INSERT INTO idx_meta(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (SNAPSHOT_KEY, snapshot_id),
        )
