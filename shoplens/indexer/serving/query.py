"""Searching a :class:`~shoplens.indexer.serving.view.CatalogView`: filters,
widening until k distinct products, one hit per product, product vectors, and
word search (the store's FTS5 index, read through the view's products and filters).

Pure functions of a view and a query: no locks, no I/O except the embeddings
cache read of :func:`model_product_vector` and the text index reads of
:func:`search_words` and :func:`word_mask`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from shoplens.errors import BadParameter, NotFound
from shoplens.indexer.catalog.store import CatalogStore
from shoplens.indexer.catalog.types import Hit, SearchFilters
from shoplens.indexer.serving.view import I32, I64, B, CatalogView
from shoplens.models.base import FloatArray, l2_normalise


def product_mask(state: CatalogView, f: SearchFilters, restrict: B | None = None) -> B | None:
    """Which products pass the filters and ``restrict`` (None: all of them)."""
    mask: B | None = restrict

    def both(m: B) -> None:
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


_NO_CANDIDATES: tuple[NDArray[np.float32], I64, I32] = (
    np.zeros(0, np.float32),
    np.zeros(0, np.int64),
    np.zeros(0, np.int32),
)

# Below this share of allowed snapshot vectors, FAISS is given the allowed ids;
# above it, an unfiltered search is widened and filtered afterwards (cheaper
# than building an id selector over most of the index for every query).
_POST_FILTER_MIN_SHARE = 0.25


def _snapshot_candidates(
    state: CatalogView, q: FloatArray, k: int, mask: B | None, min_score: float
) -> tuple[NDArray[np.float32], I64, I32]:
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
    allowed: I64 | None = None
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


def search_view(
    state: CatalogView, q: FloatArray, k: int, f: SearchFilters, restrict: B | None = None
) -> list[Hit]:
    """Top-k distinct products for an index-space query; ``restrict``: a product mask
    applied like a filter (the products a refined search's words matched)."""
    mask = product_mask(state, f, restrict)
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


def _tiers(terms: list[str]) -> list[bool]:
    """Products matching every word first, then (several words) those matching some."""
    return [True, False] if len(terms) > 1 else [True]


def _word_score(rank: float, every: bool) -> float:
    """A text rank (negative, lower is better) -> (0, 1]; above 0.5 every word matched.

    Keeps the answer's scores descending across the two tiers; within a tier,
    higher is a better text match. Comparable within one answer only.
    """
    x = max(0.0, -rank)
    return (0.5 if every else 0.0) + 0.5 * x / (1.0 + x)


def search_words(
    store: CatalogStore, state: CatalogView, terms: list[str], k: int, f: SearchFilters
) -> list[Hit]:
    """Top-k products whose text matches ``terms`` (see :mod:`shoplens.indexer.catalog.text`),
    through the view: only its live products, the filters applied, each shown
    with its first photo."""
    mask = product_mask(state, f)
    min_score = -np.inf if f.min_score is None else float(f.min_score)
    hits: list[Hit] = []
    seen: set[str] = set()
    for every in _tiers(terms):
        want = k - len(hits)
        limit = max(4 * want, 64)
        while True:  # widen until enough pass the filters or the matches run out
            matches = store.text_ranked(terms, limit, every=every)
            found: list[Hit] = []
            below = False  # scores only fall from here: widening cannot help
            for pid, rank in matches:
                pos = state.prod_pos.get(pid)
                images = state.images_by_product.get(pid)
                if pid in seen or pos is None or not images or (mask is not None and not mask[pos]):
                    continue  # not in this view, filtered out, or nothing to show it with
                score = _word_score(rank, every)
                if score < min_score:
                    below = True
                    break
                found.append(Hit(state.products[pos], images[0].image_id, score))
                if len(found) == want:
                    break
            if below or len(found) == want or len(matches) < limit:
                break
            limit *= 4
        hits.extend(found)
        seen.update(h.product.product_id for h in found)
        if len(hits) >= k:
            break
    return hits


def word_mask(store: CatalogStore, state: CatalogView, terms: list[str], f: SearchFilters) -> B:
    """The products a refined photo search is restricted to: those matching every
    word, or when none of them passes the filters, those matching some word."""
    allowed = product_mask(state, f)
    mask = np.zeros(len(state.products), np.bool_)
    for every in _tiers(terms):
        mask = np.zeros(len(state.products), np.bool_)
        for pid in store.text_matching(terms, every=every):
            pos = state.prod_pos.get(pid)
            if pos is not None:
                mask[pos] = True
        if (mask if allowed is None else mask & allowed).any():
            break
    return mask


def query_vector(vector: FloatArray, dim: int) -> FloatArray:
    q = np.asarray(vector, dtype=np.float32).reshape(-1)
    if q.shape[0] != dim:
        raise BadParameter(f"query vector has dimension {q.shape[0]}, the index has {dim}")
    n = float(np.linalg.norm(q))
    if not np.isfinite(n) or n == 0.0:
        raise BadParameter("query vector is zero or not finite")
    return l2_normalise(q[None, :]).reshape(-1)


def centred(queries: FloatArray, weight: float) -> FloatArray:
    """``(n, d)`` unit queries minus ``weight`` times their mean direction, renormalised.

    A cheap hubness correction for a batch of queries from one photo (its
    crops): scoring a catalog vector ``c`` with ``q - w*m`` is ``q.c - w*m.c``
    up to the query's scale, so catalog photos close to what all the crops
    share lose ``w*m.c``, whatever the crop. One query, or crops that all
    agree, are left as they are (nothing but the mean is left to remove).
    """
    if weight == 0.0 or len(queries) < 2:
        return queries
    return shifted(queries, l2_normalise(queries.mean(axis=0, keepdims=True))[0], weight)


def shifted(queries: FloatArray, direction: FloatArray, weight: float) -> FloatArray:
    """``(n, d)`` queries minus ``weight * direction``, renormalised: what photo and crop
    centring share (:func:`centred`, ``query_domain.QueryDomain.centre``). A query
    that sat on the subtracted vector itself keeps its own direction."""
    out = queries - np.float32(weight) * np.asarray(direction, np.float32)
    keep = np.linalg.norm(out, axis=1) < 1e-6  # nothing else to go by
    if np.any(keep):
        out[keep] = queries[keep]
    return l2_normalise(out)


def index_product_vector(state: CatalogView, product_id: str) -> FloatArray:
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
    return query_vector(mean, state.snapshot.index_dim)


def model_product_vector(store: CatalogStore, state: CatalogView, product_id: str) -> FloatArray:
    """Mean of the product's normalised *model* vectors (embeddings cache), renormalised."""
    if product_id not in state.prod_pos:
        raise NotFound(f"product {product_id!r} does not exist")
    imgs = state.images_by_product.get(product_id, [])
    shas = [im.sha256 for im in imgs if im.vid in state.image_id_by_vid]
    vecs = store.get_embeddings(state.snapshot.model, shas) if shas else {}
    if not vecs:
        raise NotFound(f"product {product_id!r} has no searchable image yet")
    mean = l2_normalise(np.stack(list(vecs.values())).astype(np.float32)).mean(axis=0)
    return query_vector(mean, state.snapshot.dim)
