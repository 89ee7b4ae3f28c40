"""The live, searchable view of the catalog the service and `shoplens search` use.

CONTRACT (the service codes against it):

- ``LiveIndex.open(settings, model_name)`` loads the published snapshot
  (``SnapshotError`` if there is none or it is corrupt, ``ModelMismatch`` if it
  was made by another model) plus every catalog change committed to the
  metadata store after that snapshot was built (PUT/DELETE from the service),
  so edits are searchable at once and survive restarts.
- Thread-safe: searches run on worker threads while ``maybe_reload`` swaps in
  a newly published snapshot; a search in flight finishes on the old one.
- The store's rows are the catalog; the snapshot only supplies vectors. A
  live image row whose vector id is in the snapshot is searched there, any
  other from the embeddings cache (the overlay); snapshot vectors of ids that
  are not live rows are masked. As a vector id never changes bytes and is
  never reused, the snapshot and the rows may disagree in either direction
  and the rows are still what is served: a re-index run relies on it to
  publish its snapshot just *before* committing its rows, so that nothing of
  a run shows before its snapshot does (``shoplens.indexer.ops.build``).

How: the searchable state is one immutable :class:`_State` (snapshot index +
a small exact "overlay" of vectors added after the snapshot + the current
catalog metadata as numpy filter columns). Writers build a new state and swap
the reference; readers take the reference once per call.

Catalog adaptation: when the snapshot carries one (``Snapshot.adaptation``,
see ``shoplens.indexer.serving.snapshot``), the snapshot index holds *adapted*
vectors. Callers still pass raw model vectors to :meth:`LiveIndex.search`;
the query, and every overlay vector (images added after the snapshot, read
raw from the embeddings cache), go through the snapshot's adaptation here.
A newly swapped-in snapshot rebuilds the overlay with its own adaptation.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from shoplens.config import Settings
from shoplens.errors import (
    BadParameter,
    ModelMismatch,
    NotFound,
    ShoplensError,
    SnapshotError,
    TooLarge,
)
from shoplens.files.atomic import write_atomic
from shoplens.indexer.catalog.photos import PHOTO_MAX_SIDE, photo_path
from shoplens.indexer.catalog.store import CatalogStore
from shoplens.indexer.catalog.types import (
    Hit,
    ImageRecord,
    NewImage,
    ProductRecord,
    SearchFilters,
    StoredImage,
)
from shoplens.indexer.serving.snapshot import Snapshot, current_id, load_snapshot
from shoplens.indexer.sources.manifest import validate_product
from shoplens.models.base import FloatArray, ImageEmbedder, l2_normalise

log = logging.getLogger(__name__)

_I64 = NDArray[np.int64]
_I32 = NDArray[np.int32]
_B = NDArray[np.bool_]


@dataclass(frozen=True)
class _State:
    snapshot: Snapshot
    seq: int
    products: list[ProductRecord]
    prod_pos: dict[str, int]
    images_by_product: dict[str, list[StoredImage]]
    sha_by_image_id: dict[str, str]
    # Per-product filter columns.
    cat_codes: dict[str, int]
    p_category: _I32
    p_in_stock: _B
    p_price: NDArray[np.float64]
    # Searchable vectors: sorted vector ids and the product position of each.
    all_vids: _I64
    all_prod: _I32
    image_id_by_vid: dict[int, str]
    # Snapshot side: live vector ids in the snapshot, their products, and
    # whether some snapshot vectors must be masked (deleted since).
    snap_vids: _I64
    snap_prod: _I32
    snap_masked: bool
    # Overlay: vectors of images added after the snapshot (exact search), in
    # the snapshot's index space (adapted when the snapshot has an adaptation).
    ov_vids: _I64
    ov_prod: _I32
    ov_x: NDArray[np.float32]
    attr_cache: dict[tuple[str, str], _B] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return f"{self.snapshot.id}:{self.seq}"


def _build_state(store: CatalogStore, snapshot: Snapshot) -> _State:
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
    return _State(
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


def _refresh(store: CatalogStore, state: _State) -> _State:
    """The state with every change committed after ``state.seq`` applied.

    Patches only the touched products (a PUT/DELETE costs O(touched) store
    reads plus O(n) numpy/dict copies, not a reload of the whole catalog).
    """
    seq, touched = store.changes_since(state.seq)
    if not touched:
        return state if seq == state.seq else replace(state, seq=seq)
    if len(touched) > _DELTA_MAX:
        return _build_state(store, state.snapshot)

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
    return _State(
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


def _product_mask(state: _State, f: SearchFilters) -> _B | None:
    """Which products pass the filters (None: all of them)."""
    mask: _B | None = None

    def both(m: _B) -> None:
        nonlocal mask
        mask = m if mask is None else mask & m

    if f.categories:
        codes = [
            state.cat_codes[c.casefold()] for c in f.categories if c.casefold() in state.cat_codes
        ]
        both(np.isin(state.p_category, np.array(codes, dtype=np.int32)))
    if f.in_stock is not None:
        both(state.p_in_stock == bool(f.in_stock))
    with np.errstate(invalid="ignore"):
        if f.min_price is not None:
            both(state.p_price >= f.min_price)
        if f.max_price is not None:
            both(state.p_price <= f.max_price)
    for key, value in f.attributes.items():
        m = state.attr_cache.get((key, value))
        if m is None:
            m = np.array([p.attributes.get(key) == value for p in state.products], np.bool_)
            state.attr_cache[(key, value)] = m
        both(m)
    if f.exclude_products:
        m = np.ones(len(state.products), dtype=np.bool_)
        for pid in f.exclude_products:
            pos = state.prod_pos.get(pid)
            if pos is not None:
                m[pos] = False
        both(m)
    return mask


_NO_CANDIDATES: tuple[NDArray[np.float32], _I64, _I32] = (
    np.zeros(0, np.float32),
    np.zeros(0, np.int64),
    np.zeros(0, np.int32),
)

# Below this share of allowed snapshot vectors, FAISS is given the allowed ids;
# above it, an unfiltered search is widened and filtered afterwards (cheaper
# than building an id selector over most of the index for every query).
_POST_FILTER_MIN_SHARE = 0.25


def _snapshot_candidates(
    state: _State, q: FloatArray, k: int, mask: _B | None, min_score: float
) -> tuple[NDArray[np.float32], _I64, _I32]:
    """``(scores, vids, product positions)`` of the best allowed snapshot images, best first.

    Widens the search until k distinct products are among the allowed hits
    (several images per product), the index is exhausted, or scores fall
    under ``min_score``. Exact whenever the index is: the top n hits contain
    every allowed image scoring above the n-th.
    """
    index = state.snapshot.index
    if index is None or not len(state.snap_vids) or index.ntotal == 0:
        return _NO_CANDIDATES
    sel = None if mask is None else mask[state.snap_prod]
    n_allowed = len(state.snap_vids) if sel is None else int(sel.sum())
    if n_allowed == 0:
        return _NO_CANDIDATES
    ntotal = index.ntotal
    share = n_allowed / ntotal
    per_product = max(1, len(state.all_vids) // max(1, len(state.prod_pos)))
    want = max(2 * k, k + 16, 2 * k * per_product)  # allowed images to look at first
    allowed: _I64 | None = None
    if share >= _POST_FILTER_MIN_SHARE:
        limit = ntotal
        n = min(limit, int(np.ceil(want / share)) + 16)
    else:
        allowed = state.snap_vids if sel is None else state.snap_vids[sel]
        limit = n_allowed
        n = min(limit, want)
    while True:
        scores, ids = index.search(q[None, :], n, allowed)
        ok = ids[0] >= 0
        s_row, id_row = scores[0][ok], ids[0][ok]
        pos = np.minimum(np.searchsorted(state.all_vids, id_row), len(state.all_vids) - 1)
        keep = state.all_vids[pos] == id_row  # masks images deleted since the snapshot
        prods = state.all_prod[pos]
        if mask is not None:
            keep &= mask[prods]
        distinct = len(np.unique(prods[keep]))
        below = len(s_row) > 0 and float(s_row[-1]) < min_score
        if distinct >= k or n >= limit or below:
            return s_row[keep], id_row[keep], prods[keep].astype(np.int32)
        n = min(limit, n * 4)


def _search_state(state: _State, q: FloatArray, k: int, f: SearchFilters) -> list[Hit]:
    mask = _product_mask(state, f)
    min_score = -np.inf if f.min_score is None else float(f.min_score)
    scores, vids, prods = _snapshot_candidates(state, q, k, mask, min_score)  # best first

    if len(state.ov_vids):
        sel = np.ones(len(state.ov_vids), np.bool_) if mask is None else mask[state.ov_prod]
        if sel.any():
            scores = np.concatenate([scores, (state.ov_x[sel] @ q).astype(np.float32)])
            vids = np.concatenate([vids, state.ov_vids[sel]])
            prods = np.concatenate([prods, state.ov_prod[sel]])
            order = np.argsort(-scores, kind="stable")
            scores, vids, prods = scores[order], vids[order], prods[order]

    keep = scores >= min_score
    scores, vids, prods = scores[keep], vids[keep], prods[keep]
    # One hit per product: its first (best) image in the ranking.
    _, first = np.unique(prods, return_index=True)
    best = np.sort(first)[:k]
    return [
        Hit(
            product=state.products[int(prods[i])],
            image_id=state.image_id_by_vid[int(vids[i])],
            score=float(np.clip(scores[i], -1.0, 1.0)),
        )
        for i in best
    ]


def _query(vector: FloatArray, dim: int) -> FloatArray:
    q = np.asarray(vector, dtype=np.float32).reshape(-1)
    if q.shape[0] != dim:
        raise BadParameter(f"query vector has dimension {q.shape[0]}, the index has {dim}")
    n = float(np.linalg.norm(q))
    if not np.isfinite(n) or n == 0.0:
        raise BadParameter("query vector is zero or not finite")
    return l2_normalise(q[None, :]).reshape(-1)


def _product_vector(state: _State, product_id: str) -> FloatArray:
    """Mean of the product's image vectors in the index space, renormalised.

    The snapshot index and the overlay both hold index-space (adapted) vectors,
    so this is the query ``similar`` searches with, not a model vector.
    """
    pos = state.prod_pos.get(product_id)
    if pos is None:
        raise NotFound(f"product {product_id!r} does not exist")
    parts: list[NDArray[np.float32]] = []
    snap_sel = state.snap_vids[state.snap_prod == pos]
    if len(snap_sel) and state.snapshot.index is not None:
        parts.append(np.asarray(state.snapshot.index.reconstruct(snap_sel), np.float32))
    ov_sel = state.ov_prod == pos
    if ov_sel.any():
        parts.append(state.ov_x[ov_sel])
    if not parts:
        raise NotFound(f"product {product_id!r} has no searchable image yet")
    mean = l2_normalise(np.concatenate(parts)).mean(axis=0)
    return _query(mean, state.snapshot.index_dim)


def _raw_product_vector(store: CatalogStore, state: _State, product_id: str) -> FloatArray:
    """Mean of the product's normalised *model* vectors (embeddings cache), renormalised."""
    if product_id not in state.prod_pos:
        raise NotFound(f"product {product_id!r} does not exist")
    imgs = state.images_by_product.get(product_id, [])
    shas = [im.sha256 for im in imgs if im.vid in state.image_id_by_vid]
    vecs = store.get_embeddings(state.snapshot.model, shas) if shas else {}
    if not vecs:
        raise NotFound(f"product {product_id!r} has no searchable image yet")
    mean = l2_normalise(np.stack(list(vecs.values())).astype(np.float32)).mean(axis=0)
    return _query(mean, state.snapshot.dim)


class LiveIndex:
    """Snapshot + overlay of later catalog edits; see the module docstring."""

    def __init__(self, settings: Settings, model_name: str, store: CatalogStore) -> None:
        self._settings = settings
        self._model = model_name
        self._store = store
        self._swap_lock = threading.Lock()
        self._write_lock = threading.RLock()
        self._bad_snapshot: str | None = None
        self._state: _State | None = None

    @classmethod
    def open(cls, settings: Settings, model_name: str) -> LiveIndex:
        snapshot = load_snapshot(settings, model_name)
        store = CatalogStore(settings.db_path)
        live = cls(settings, model_name, store)
        try:
            live._state = _build_state(store, snapshot)
        except BaseException:
            store.close()
            raise
        return live

    def close(self) -> None:
        self._store.close()

    @property
    def _cur(self) -> _State:
        state = self._state
        if state is None:  # only between __init__ and open()
            raise SnapshotError("the index is not loaded")
        return state

    @property
    def version(self) -> str:
        """Changes whenever results can change (new snapshot or catalog edit)."""
        return self._cur.version

    @property
    def model_name(self) -> str:
        return self._model

    @property
    def snapshot_id(self) -> str:
        return self._cur.snapshot.id

    @property
    def snapshot_facts(self) -> dict[str, Any]:
        return dict(self._cur.snapshot.facts)

    @property
    def dim(self) -> int:
        """The model dimension: what ``search`` and ``upsert_product``'s embedder take."""
        return self._cur.snapshot.dim

    @property
    def index_dim(self) -> int:
        """The dimension of the searched space (the adaptation's output, else ``dim``)."""
        return self._cur.snapshot.index_dim

    @property
    def store(self) -> CatalogStore:
        return self._store

    @property
    def size(self) -> dict[str, int]:
        """{"products": n, "images": n, "vectors": n} currently searchable."""
        s = self._cur
        return {
            "products": len(s.prod_pos),
            "images": sum(len(v) for v in s.images_by_product.values()),
            "vectors": len(s.all_vids),
        }

    def _swap(self, state: _State) -> None:
        with self._swap_lock:
            self._state = state

    def maybe_reload(self) -> bool:
        """Swap to a newer published snapshot if there is one; True if swapped.

        Also picks up catalog edits another process committed to the store.
        A snapshot that fails to load is logged and skipped: the current one
        keeps serving.
        """
        with self._write_lock:
            state = self._cur
            cur = current_id(self._settings)
            if cur is not None and cur != state.snapshot.id and cur != self._bad_snapshot:
                try:
                    snapshot = load_snapshot(self._settings, self._model)
                    new = _build_state(self._store, snapshot)
                except (SnapshotError, ModelMismatch) as exc:
                    self._bad_snapshot = cur
                    log.error(
                        "not loading snapshot %s, still serving %s: %s",
                        cur,
                        state.snapshot.id,
                        exc.message,
                    )
                    return False
                self._swap(new)
                log.info("now serving snapshot %s", snapshot.id)
                return True
            if self._store.seq() != state.seq:
                self._swap(_refresh(self._store, state))
                return True
            return False

    def search(self, vector: FloatArray, k: int, filters: SearchFilters) -> list[Hit]:
        """Top-k distinct products for a query vector in the *model* space (``dim``).

        The vector is normalised and, when the snapshot has a catalog
        adaptation, projected with it before searching. Scores are cosine
        similarities in [-1, 1] in the searched (adapted) space, so they are
        comparable within one snapshot, not across adapted and plain ones.
        Returns k hits whenever at least k products pass the filters, however
        selective the filter is.
        """
        state = self._cur
        if k < 1:
            raise BadParameter("k must be at least 1")
        q = state.snapshot.to_index_space(_query(vector, state.snapshot.dim))[0]
        return _search_state(state, q, k, filters)

    def product_vector(self, product_id: str) -> FloatArray:
        """Mean of the product's normalised *model* vectors, renormalised (``dim``-d).

        Raw model space, like the vectors ``search`` takes: ``search(product_vector(p))``
        is valid. (``similar`` averages in the adapted space instead.)
        """
        return _raw_product_vector(self._store, self._cur, product_id)

    def similar(self, product_id: str, k: int, filters: SearchFilters) -> list[Hit]:
        """More like this: products nearest to the product's own images (itself excluded).

        The query is the mean of the product's normalised image vectors in the
        searched (adapted) space, renormalised: it favours what all its photos
        share over any one shot.
        """
        state = self._cur
        if k < 1:
            raise BadParameter("k must be at least 1")
        q = _product_vector(state, product_id)
        f = SearchFilters(
            categories=filters.categories,
            in_stock=filters.in_stock,
            min_price=filters.min_price,
            max_price=filters.max_price,
            min_score=filters.min_score,
            exclude_products=(*filters.exclude_products, product_id),
            attributes=filters.attributes,
        )
        return _search_state(state, q, k, f)

    def product(self, product_id: str) -> tuple[ProductRecord, list[ImageRecord]]:
        """``NotFound`` if unknown or deleted."""
        state = self._cur
        pos = state.prod_pos.get(product_id)
        if pos is None:
            raise NotFound(f"product {product_id!r} does not exist")
        imgs = state.images_by_product.get(product_id, [])
        return state.products[pos], [im.record() for im in imgs]

    def image_path(self, image_id: str) -> str:
        """Path of the stored (re-encoded) catalog photo; ``NotFound`` if unknown."""
        sha = self._cur.sha_by_image_id.get(image_id)
        if sha is None:
            found = self._store.find_image(image_id)
            if found is None:
                raise NotFound(f"image {image_id!r} does not exist")
            sha = found.sha256
        path = photo_path(self._settings.data_dir, sha)
        if not path.is_file():
            raise NotFound(f"image {image_id!r} has no stored photo")
        return str(path)

    def upsert_product(
        self, product: ProductRecord, images: Sequence[bytes], embedder: ImageEmbedder
    ) -> ProductRecord:
        """Create or replace a product with its photos; searchable when this returns.

        With no images the product's metadata is updated and its photos kept.
        Everything is written to the store (photos, embeddings, rows, seq)
        before the in-memory view changes, so an acknowledged write survives
        a restart.
        """
        from shoplens.models.decode import decode_image, encode_jpeg

        product = validate_product(product)
        if embedder.name != self._model:
            raise ModelMismatch(
                f"the embedder is {embedder.name!r} but the index uses {self._model!r}"
            )
        if embedder.dim != self.dim:
            raise ModelMismatch(
                f"the embedder has dimension {embedder.dim}, the index has {self.dim}"
            )
        new: list[NewImage] = []
        prepared: list[FloatArray] = []
        shas: list[str] = []
        for i, data in enumerate(images):
            if len(data) > self._settings.max_image_bytes:
                raise TooLarge(
                    f"image {i + 1} is {len(data)} bytes; the limit is "
                    f"{self._settings.max_image_bytes}"
                )
            sha = hashlib.sha256(data).hexdigest()
            try:
                img = decode_image(data, max_pixels=self._settings.max_image_pixels)
            except ShoplensError as exc:
                raise type(exc)(f"image {i + 1}: {exc.message}") from exc
            target = photo_path(self._settings.data_dir, sha)
            if not target.exists():
                write_atomic(target, encode_jpeg(img, max_side=PHOTO_MAX_SIDE))
            new.append(NewImage(source="upload", sha256=sha))
            shas.append(sha)
            prepared.append(embedder.prepare(img))
        with self._write_lock:
            if prepared:
                vecs = embedder.embed_prepared(np.stack(prepared).astype(np.float32))
                self._store.put_embeddings(self._model, list(zip(shas, list(vecs), strict=True)))
            self._store.upsert_products([(product, new, bool(new))])
            self._swap(_refresh(self._store, self._cur))
            stored = self._store.get_product(product.product_id)
        if stored is None:  # deleted by another process in between
            raise NotFound(f"product {product.product_id!r} does not exist")
        return stored[0]

    def delete_product(self, product_id: str) -> None:
        """Remove at once from results; ``NotFound`` if unknown."""
        with self._write_lock:
            if self._store.delete_products([product_id]) == 0:
                raise NotFound(f"product {product_id!r} does not exist")
            self._swap(_refresh(self._store, self._cur))
