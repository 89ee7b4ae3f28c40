"""The live index: the read side of the catalog the service and `shoplens search` use.

CONTRACT (the service codes against it):

- ``LiveIndex.open(settings, model_name)`` loads the published snapshot
  (``SnapshotError`` if there is none or it is corrupt, ``ModelMismatch`` if it
  was made by another model) plus every catalog change committed to the
  metadata store after that snapshot was built (PUT/DELETE from the service),
  so edits are searchable at once and survive restarts.
- Thread-safe: searches run on worker threads while ``maybe_reload`` swaps in
  a newly published snapshot; a search in flight finishes on the old one.
- Reads only: search (by vector, by words, or by vector refined by words),
  similar, product, image paths, refresh. Catalog edits
  go through :class:`shoplens.indexer.serving.writer.CatalogWriter`, which
  commits to the store and then calls :meth:`LiveIndex.apply_edit` so the
  edit is searchable when it returns.

What is searched is one immutable :class:`~shoplens.indexer.serving.view.CatalogView`
(see there for how snapshot and rows combine); this class owns the reference
to the current view and the locks around swapping it.

Catalog adaptation: when the snapshot carries one (``Snapshot.adaptation``,
see ``shoplens.indexer.serving.snapshot``), the snapshot index holds *adapted*
vectors. Callers still pass raw model vectors to :meth:`LiveIndex.search`;
the query goes through the snapshot's adaptation here. A newly swapped-in
snapshot rebuilds the overlay with its own adaptation.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from shoplens.config import Settings
from shoplens.errors import BadParameter, ModelMismatch, NotFound, SnapshotError
from shoplens.indexer.catalog.photos import photo_path
from shoplens.indexer.catalog.store import CatalogStore
from shoplens.indexer.catalog.text import words
from shoplens.indexer.catalog.types import Hit, ImageRecord, ProductRecord, SearchFilters
from shoplens.indexer.serving.query import (
    centred,
    index_product_vector,
    model_product_vector,
    query_vector,
    search_view,
    search_words,
    word_mask,
)
from shoplens.indexer.serving.query_domain import MIN_SEARCHES, QueryDomain
from shoplens.indexer.serving.rerank import (
    RERANK_TOP,
    CatalogFeatures,
    LocalFeatures,
    QueryPhoto,
    local_features,
    rerank_hits,
)
from shoplens.indexer.serving.snapshot import current_id, load_snapshot
from shoplens.indexer.serving.view import CatalogView, build_view, refresh_view
from shoplens.models.base import FloatArray

log = logging.getLogger(__name__)

T = TypeVar("T")


class LiveIndex:
    """Snapshot + overlay of later catalog edits; see the module docstring."""

    def __init__(self, settings: Settings, model_name: str, store: CatalogStore) -> None:
        self._settings = settings
        self._model = model_name
        self._store = store
        self._swap_lock = threading.Lock()
        self._write_lock = threading.RLock()
        self._bad_snapshot: str | None = None
        self._state: CatalogView | None = None
        # Catalog photos' local features by sha256 (content: valid across snapshots).
        self._local = CatalogFeatures(self._load_photo)
        # Query photos' local features, computed while the caller embeds the photo
        # (query_photo); started on the first studio search.
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        # The shop's searches' mean, which studio photo searches are centred on.
        self._domain = QueryDomain(
            settings.data_dir, model_name, enabled=settings.query_centring != "off"
        )

    @classmethod
    def open(cls, settings: Settings, model_name: str) -> LiveIndex:
        store = CatalogStore(settings.database(settings.db_path))
        live = cls(settings, model_name, store)
        try:
            snapshot = load_snapshot(settings, model_name, store)
            live._state = build_view(store, snapshot)
            live._warm(live._state)
        except BaseException:
            store.close()
            raise
        return live

    def close(self) -> None:
        self.sync_query_domain()
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
        self._store.close()

    @property
    def _cur(self) -> CatalogView:
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
    def catalog_seq(self) -> int:
        """The catalog change sequence the searched view includes."""
        return self._cur.seq

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
    def settings(self) -> Settings:
        return self._settings

    @property
    def size(self) -> dict[str, int]:
        """{"products": n, "images": n, "vectors": n} currently searchable."""
        s = self._cur
        return {
            "products": len(s.prod_pos),
            "images": sum(len(v) for v in s.images_by_product.values()),
            "vectors": len(s.all_vids),
        }

    @staticmethod
    def _studio(state: CatalogView) -> bool:
        """Whether ``state`` takes the studio pipeline (no adaptation learnt)."""
        return bool(state.snapshot.facts.get("pipeline", {}).get("kind") == "studio")

    def _reranks(self, state: CatalogView) -> bool:
        """Whether photo searches on ``state`` are re-ranked geometrically."""
        return self._studio(state) and self._settings.rerank != "off"

    def _domain_space(self, state: CatalogView) -> str | None:
        """The query-domain key of ``state``'s index space, or None where photo
        searches are not centred (a snapshot that learnt an adaptation)."""
        snapshot = state.snapshot
        if not self._studio(state):
            return None
        kind = snapshot.adaptation.kind if snapshot.adaptation is not None else "plain"
        return f"{kind}-{snapshot.index_dim}"

    def query_domain(self) -> dict[str, Any]:
        """``{"space", "searches", "centring"}`` of the current snapshot's photo searches."""
        space = self._domain_space(self._cur)
        if space is None or not self._domain.enabled:
            return {"space": space, "searches": 0, "centring": False}
        n = self._domain.searches(space)
        return {"space": space, "searches": int(n), "centring": n >= MIN_SEARCHES}

    def sync_query_domain(self) -> None:
        """Save this process's searches to the shared query-domain file (off the request path)."""
        self._domain.sync()

    def _warm(self, state: CatalogView, before: CatalogView | None = None) -> CatalogView:
        """Compute the local features of ``state``'s catalog photos (those new since
        ``before``) before it serves, so no search pays a catalog photo's SIFT."""
        if self._reranks(state):
            shas: Iterable[str] = state.sha_by_image_id.values()
            if before is not None:
                known = set(before.sha_by_image_id.values())
                shas = [s for s in shas if s not in known]
            self._local.warm(shas)
        return state

    def query_photo(self, image: Image.Image) -> QueryPhoto:
        """``image`` as :meth:`search` takes it, its local features started now on
        a worker thread when the current snapshot re-ranks (so the caller's
        embedding of the photo runs meanwhile); otherwise nothing is computed."""
        if not self._reranks(self._cur):
            return QueryPhoto(image)
        with self._pool_lock:
            if self._pool is None:
                # One worker per core: more would only queue behind each other.
                workers = min(4, os.cpu_count() or 1)
                self._pool = ThreadPoolExecutor(workers, thread_name_prefix="shoplens-sift")
            return QueryPhoto(image, self._pool.submit(local_features, image))

    @property
    def rerank_features(self) -> CatalogFeatures:
        """The catalog photos' local features (filled when a studio snapshot loads)."""
        return self._local

    def _swap(self, state: CatalogView) -> None:
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
            cur = current_id(self._settings, self._store)
            if cur is not None and cur != state.snapshot.id and cur != self._bad_snapshot:
                try:
                    snapshot = load_snapshot(self._settings, self._model, self._store)
                    new = build_view(self._store, snapshot)
                except (SnapshotError, ModelMismatch) as exc:
                    self._bad_snapshot = cur
                    log.error(
                        "not loading snapshot %s, still serving %s: %s",
                        cur,
                        state.snapshot.id,
                        exc.message,
                    )
                    return False
                self._warm(new)
                self._swap(new)
                log.info("now serving snapshot %s", snapshot.id)
                return True
            if self._store.seq() != state.seq:
                self._swap(self._warm(refresh_view(self._store, state), state))
                return True
            return False

    def search(
        self,
        vector: FloatArray,
        k: int,
        filters: SearchFilters,
        text: str | None = None,
        image: Image.Image | QueryPhoto | None = None,
        *,
        observe: bool = False,
    ) -> list[Hit]:
        """Top-k distinct products for a query vector in the *model* space (``dim``).

        The vector is normalised and, when the snapshot has a catalog
        adaptation, projected with it before searching. Scores are cosine
        similarities in [-1, 1] in the searched (adapted) space, so they are
        comparable within one snapshot, not across adapted and plain ones.
        Returns k hits whenever at least k products pass the filters, however
        selective the filter is.

        ``text`` refines the search: only products whose text matches every
        word (or, when none of those passes the filters, some word) are ranked,
        by the vector as usual.

        ``image``: the decoded query photo (or :meth:`query_photo`'s, whose
        local features are computed ahead). On a studio snapshot
        (``facts["pipeline"]["kind"] == "studio"``) the first products are then
        re-ranked by geometric verification (``serving/rerank.py``) and their
        scores include its bonus (still in [-1, 1], still descending).
        A photo search on a studio snapshot is also centred on the mean of the
        shop's photo searches (:mod:`serving.query_domain`); ``observe`` adds
        this one to that mean (a shopper's search, not an operator's).
        """
        state = self._cur
        if k < 1:
            raise BadParameter("k must be at least 1")
        q = state.snapshot.to_index_space(query_vector(vector, state.snapshot.dim))[0]
        space = self._domain_space(state) if image is not None else None
        if space is not None:
            if observe:
                self._domain.observe(space, q)
            q = self._domain.centre(space, q)
        restrict = None
        if text is not None:
            restrict = word_mask(self._store, state, _terms(text), filters)
        if image is None or not self._reranks(state):
            return search_view(state, q, k, filters, restrict)
        hits = search_view(state, q, max(k, RERANK_TOP), filters, restrict)
        return rerank_hits(hits, image, lambda h: self._hit_features(state, h))[:k]

    def _hit_features(self, state: CatalogView, hit: Hit) -> LocalFeatures:
        sha = state.sha_by_image_id.get(hit.image_id)
        if sha is None:
            found = self._store.find_image(hit.image_id)
            if found is None:
                return LocalFeatures.empty()
            sha = found.sha256
        return self._local.get(sha)

    def _load_photo(self, sha256: str) -> Image.Image:
        with Image.open(photo_path(self._settings.data_dir, sha256)) as im:
            return im.convert("RGB")  # our own re-encoded JPEG: no untrusted bytes

    def search_batch(
        self, vectors: FloatArray, k: int, filters: SearchFilters, centre: float = 0.0
    ) -> list[list[Hit]]:
        """:meth:`search` for each row of ``(n, dim)`` model vectors, on one view.

        The queries go through the catalog adaptation as one matrix product: per
        query, reading the adaptation matrix cost more than the search itself, and
        shop the look searches about a hundred crops per photo.

        ``centre`` > 0: each query, in the searched space, loses ``centre`` times the
        batch's mean direction and is renormalised (:func:`centred`). What every
        crop of one photo shares (its light, its walls) then stops pulling the
        crops towards the catalog photos that are near any room scene ("hubs").
        """
        state = self._cur
        if k < 1:
            raise BadParameter("k must be at least 1")
        if len(vectors) == 0:
            return []
        dim = state.snapshot.dim
        queries = state.snapshot.to_index_space(np.stack([query_vector(v, dim) for v in vectors]))
        if centre:
            queries = centred(queries, centre)
        return [search_view(state, q, k, filters) for q in queries]

    def search_words(self, text: str, k: int, filters: SearchFilters) -> list[Hit]:
        """Top-k products whose title, category, attribute values or description
        match the words of ``text`` (prefixes, any case and accents): those matching
        every word first, then those matching some, each group by bm25 relevance
        (a title match beats a description match). Scores are in (0, 1], above 0.5
        when every word matched; the hit's image is the product's first photo.
        """
        if k < 1:
            raise BadParameter("k must be at least 1")
        return search_words(self._store, self._cur, _terms(text), k, filters)

    def product_vector(self, product_id: str) -> FloatArray:
        """Mean of the product's normalised *model* vectors, renormalised (``dim``-d).

        Raw model space, like the vectors ``search`` takes: ``search(product_vector(p))``
        is valid. (``similar`` averages in the adapted space instead.)
        """
        return model_product_vector(self._store, self._cur, product_id)

    def similar(self, product_id: str, k: int, filters: SearchFilters) -> list[Hit]:
        """More like this: products nearest to the product's own images (itself excluded).

        The query is the mean of the product's normalised image vectors in the
        searched (adapted) space, renormalised: it favours what all its photos
        share over any one shot.
        """
        state = self._cur
        if k < 1:
            raise BadParameter("k must be at least 1")
        q = index_product_vector(state, product_id)
        f = SearchFilters(
            categories=filters.categories,
            in_stock=filters.in_stock,
            min_price=filters.min_price,
            max_price=filters.max_price,
            min_score=filters.min_score,
            exclude_products=(*filters.exclude_products, product_id),
            attributes=filters.attributes,
        )
        return search_view(state, q, k, f)

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

    def apply_edit(self, commit: Callable[[CatalogStore], T]) -> T:
        """Run ``commit(store)`` under the write lock, then serve the result at once.

        The one way a catalog edit reaches the live view (used by
        ``CatalogWriter``): the store is written first, so an acknowledged edit
        survives a restart; the view is refreshed before the lock is released,
        so two writers never swap views built from each other's stale state.
        """
        with self._write_lock:
            out = commit(self._store)
            self._swap(self._warm(refresh_view(self._store, self._cur), self._cur))
            return out


def _terms(text: str) -> list[str]:
    terms = words(text)
    if not terms:
        raise BadParameter(f"q: no words to search for in {text[:80]!r} (letters or digits)")
    return terms
