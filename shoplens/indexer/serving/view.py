"""The searchable state of the live index: one immutable :class:`CatalogView`.

A view is the published snapshot's index, a small exact "overlay" of vectors
added after the snapshot, and the current catalog metadata as numpy filter
columns. Writers build a new view and swap the reference (``LiveIndex``);
readers take the reference once per call, so a search in flight finishes on
the view it started with.

The store's rows are the catalog; the snapshot only supplies vectors. A live
image row whose vector id is in the snapshot is searched there, any other
from the embeddings cache (the overlay); snapshot vectors of ids that are not
live rows are masked. As a vector id never changes bytes and is never reused,
the snapshot and the rows may disagree in either direction and the rows are
still what is served (a re-index run relies on it: ``shoplens.indexer.ops.build``).

Overlay vectors are read raw from the embeddings cache and go through the
snapshot's catalog adaptation here, so the whole view is in the index space.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray

from shoplens.errors import SnapshotError
from shoplens.indexer.catalog.store import CatalogStore
from shoplens.indexer.catalog.types import ProductRecord, StoredImage
from shoplens.indexer.serving.snapshot import Snapshot

I64 = NDArray[np.int64]
I32 = NDArray[np.int32]
B = NDArray[np.bool_]


@dataclass(frozen=True)
class CatalogView:
    """Everything one search reads, immutable once built (see the module docstring)."""

    snapshot: Snapshot
    seq: int
    products: list[ProductRecord]
    prod_pos: dict[str, int]
    images_by_product: dict[str, list[StoredImage]]
    sha_by_image_id: dict[str, str]
    # Per-product filter columns.
    cat_codes: dict[str, int]
    p_category: I32
    p_in_stock: B
    p_price: NDArray[np.float64]
    # Searchable vectors: sorted vector ids and the product position of each.
    all_vids: I64
    all_prod: I32
    image_id_by_vid: dict[int, str]
    # Snapshot side: live vector ids in the snapshot, their products, and
    # whether some snapshot vectors must be masked (deleted since).
    snap_vids: I64
    snap_prod: I32
    snap_masked: bool
    # Overlay: vectors of images added after the snapshot (exact search), in
    # the snapshot's index space (adapted when the snapshot has an adaptation).
    ov_vids: I64
    ov_prod: I32
    ov_x: NDArray[np.float32]
    attr_cache: dict[tuple[str, str], B] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return f"{self.snapshot.id}:{self.seq}"


def build_view(store: CatalogStore, snapshot: Snapshot) -> CatalogView:
    seq, products, images = store.load_catalog()
    prod_pos = {p.product_id: i for i, p in enumerate(products)}
    images = [im for im in images if im.product_id in prod_pos]
    by_product: dict[str, list[StoredImage]] = {}
    for im in images:
        by_product.setdefault(im.product_id, []).append(im)
    for lst in by_product.values():
        lst.sort(key=lambda im: (im.position, im.vid))

    cat_codes: dict[str, int] = {}
    p_category = np.full(len(products), -1, dtype=np.int32)
    for i, p in enumerate(products):
        if p.category is not None:
            p_category[i] = cat_codes.setdefault(p.category.casefold(), len(cat_codes))
    p_in_stock = np.array([p.in_stock for p in products], dtype=np.bool_)
    p_price = np.array([np.nan if p.price is None else p.price for p in products], dtype=np.float64)

    in_snap = np.isin(
        np.array([im.vid for im in images], dtype=np.int64), snapshot.vids, assume_unique=True
    )
    snap_imgs = [im for im, s in zip(images, in_snap, strict=True) if s]
    rest = [im for im, s in zip(images, in_snap, strict=True) if not s]
    vecs = store.get_embeddings(snapshot.model, [im.sha256 for im in rest]) if rest else {}
    ov_imgs = [im for im in rest if im.sha256 in vecs]
    ov_x = _overlay_vectors(snapshot, [vecs[im.sha256] for im in ov_imgs])

    searchable = snap_imgs + ov_imgs
    order = np.argsort(np.array([im.vid for im in searchable], dtype=np.int64), kind="stable")
    all_vids = np.array([searchable[i].vid for i in order], dtype=np.int64)
    all_prod = np.array([prod_pos[searchable[i].product_id] for i in order], dtype=np.int32)
    return CatalogView(
        snapshot=snapshot,
        seq=seq,
        products=products,
        prod_pos=prod_pos,
        images_by_product=by_product,
        sha_by_image_id={im.image_id: im.sha256 for im in images},
        cat_codes=cat_codes,
        p_category=p_category,
        p_in_stock=p_in_stock,
        p_price=p_price,
        all_vids=all_vids,
        all_prod=all_prod,
        image_id_by_vid={im.vid: im.image_id for im in searchable},
        snap_vids=np.array([im.vid for im in snap_imgs], dtype=np.int64),
        snap_prod=np.array([prod_pos[im.product_id] for im in snap_imgs], dtype=np.int32),
        snap_masked=len(snap_imgs) != len(snapshot.vids),
        ov_vids=np.array([im.vid for im in ov_imgs], dtype=np.int64),
        ov_prod=np.array([prod_pos[im.product_id] for im in ov_imgs], dtype=np.int32),
        ov_x=ov_x,
    )


def _overlay_vectors(snapshot: Snapshot, raw: list[NDArray[np.float32]]) -> NDArray[np.float32]:
    """Raw model vectors from the embeddings cache -> the snapshot's index space."""
    if not raw:
        return np.zeros((0, snapshot.index_dim), np.float32)
    x = np.stack(raw).astype(np.float32, copy=False)
    if x.shape[1] != snapshot.dim:
        raise SnapshotError(
            f"stored embeddings have dimension {x.shape[1]}, the model has {snapshot.dim}"
        )
    return snapshot.to_index_space(x)


# Above this many touched products a full rebuild is cheaper than patching.
_DELTA_MAX = 5000


def refresh_view(store: CatalogStore, state: CatalogView) -> CatalogView:
    """The state with every change committed after ``state.seq`` applied.

    Patches only the touched products (a PUT/DELETE costs O(touched) store
    reads plus O(n) numpy/dict copies, not a reload of the whole catalog).
    """
    seq, touched = store.changes_since(state.seq)
    if not touched:
        return state if seq == state.seq else replace(state, seq=seq)
    if len(touched) > _DELTA_MAX:
        return build_view(store, state.snapshot)

    products = list(state.products)  # deleted products stay as tombstones
    prod_pos = dict(state.prod_pos)
    by_product = dict(state.images_by_product)
    cat_codes = dict(state.cat_codes)
    cats = state.p_category.tolist()
    stock = state.p_in_stock.tolist()
    prices = state.p_price.tolist()
    removed: set[int] = set()
    added: list[StoredImage] = []
    for pid, (rec, imgs) in touched.items():
        removed.update(im.vid for im in state.images_by_product.get(pid, []))
        if rec is None:
            prod_pos.pop(pid, None)
            by_product.pop(pid, None)
            continue
        pos = prod_pos.get(pid)
        if pos is None:
            pos = len(products)
            prod_pos[pid] = pos
            products.append(rec)
            cats.append(-1)
            stock.append(True)
            prices.append(np.nan)
        products[pos] = rec
        cats[pos] = (
            -1
            if rec.category is None
            else cat_codes.setdefault(rec.category.casefold(), len(cat_codes))
        )
        stock[pos] = rec.in_stock
        prices[pos] = np.nan if rec.price is None else rec.price
        by_product[pid] = imgs
        added.extend(imgs)

    rm = np.fromiter(removed, dtype=np.int64, count=len(removed))
    keep_s = ~np.isin(state.snap_vids, rm)
    keep_o = ~np.isin(state.ov_vids, rm)
    add_vids = np.array([im.vid for im in added], dtype=np.int64)
    in_snap = np.isin(add_vids, state.snapshot.vids)
    snap_add = [im for im, f in zip(added, in_snap, strict=True) if f]
    rest = [im for im, f in zip(added, in_snap, strict=True) if not f]
    vecs = store.get_embeddings(state.snapshot.model, [im.sha256 for im in rest]) if rest else {}
    ov_add = [im for im in rest if im.sha256 in vecs]

    snap_vids = np.concatenate(
        [state.snap_vids[keep_s], np.array([im.vid for im in snap_add], dtype=np.int64)]
    )
    snap_prod = np.concatenate(
        [
            state.snap_prod[keep_s],
            np.array([prod_pos[im.product_id] for im in snap_add], dtype=np.int32),
        ]
    )
    ov_vids = np.concatenate(
        [state.ov_vids[keep_o], np.array([im.vid for im in ov_add], dtype=np.int64)]
    )
    ov_prod = np.concatenate(
        [state.ov_prod[keep_o], np.array([prod_pos[im.product_id] for im in ov_add], np.int32)]
    )
    new_x = _overlay_vectors(state.snapshot, [vecs[im.sha256] for im in ov_add])
    ov_x = np.concatenate([state.ov_x[keep_o], new_x]).astype(np.float32, copy=False)

    vids = np.concatenate([snap_vids, ov_vids])
    prods = np.concatenate([snap_prod, ov_prod])
    order = np.argsort(vids, kind="stable")
    image_id_by_vid = {v: i for v, i in state.image_id_by_vid.items() if v not in removed}
    image_id_by_vid.update({im.vid: im.image_id for im in snap_add + ov_add})
    sha_by_image_id = dict(state.sha_by_image_id)
    sha_by_image_id.update({im.image_id: im.sha256 for im in added})
    return CatalogView(
        snapshot=state.snapshot,
        seq=seq,
        products=products,
        prod_pos=prod_pos,
        images_by_product=by_product,
        sha_by_image_id=sha_by_image_id,
        cat_codes=cat_codes,
        p_category=np.array(cats, dtype=np.int32),
        p_in_stock=np.array(stock, dtype=np.bool_),
        p_price=np.array(prices, dtype=np.float64),
        all_vids=vids[order],
        all_prod=prods[order].astype(np.int32),
        image_id_by_vid=image_id_by_vid,
        snap_vids=snap_vids,
        snap_prod=snap_prod,
        snap_masked=len(snap_vids) != len(state.snapshot.vids),
        ov_vids=ov_vids,
        ov_prod=ov_prod,
        ov_x=ov_x,
    )
