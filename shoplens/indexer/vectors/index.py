"""The vector index: exact below ``exact_max`` vectors, IVF-PQ + exact re-ranking above.

Scores are inner products of L2-normalised vectors, i.e. cosine similarity.
Whatever the index type, the scores returned are recomputed from the full
vectors of the returned ids, so the ANN stage only decides *which* candidates
are looked at, never the score a caller sees.

Internally FAISS works on row numbers 0..n-1; the caller's int64 ids are
mapped at the edges. All state is fixed once built or loaded, so concurrent
``search`` calls from worker threads need no lock (FAISS' search is const).

Thread count: FAISS parallelises with OpenMP. Small query batches (a
request's query) run on one OpenMP thread of the calling thread, so worker
threads searching at once do not each start a team on a machine with few
cores; large batches use the caller's OpenMP setting (all cores by default).
Training runs on one thread too (see :mod:`build`).

:class:`VectorIndex` holds the index and searches it; how it is built is in
:mod:`build`, and how it is saved and opened again in :mod:`persist`.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from numpy.typing import NDArray

from shoplens.errors import BadParameter, NotFound
from shoplens.indexer.vectors import persist
from shoplens.indexer.vectors.build import checked_ids, index_facts, make_index
from shoplens.indexer.vectors.kernels import inner_products, omp_threads, topk
from shoplens.indexer.vectors.plan import AnnParams, IndexPlan, plan_index
from shoplens.indexer.vectors.rows import F32, I64, RamRows, RowStore

# Largest allowed-id subset searched by brute force in the ANN tier (see __init__).
_BRUTE_FORCE_MAX = 2048
# Batches smaller than this search on one OpenMP thread: a request's query
# gains nothing from a thread team, and on a few shared cores the team's
# barriers cost more than the search whenever the service runs several
# requests at once.
_PARALLEL_MIN_QUERIES = 32


class VectorIndex:
    """Cosine top-k over L2-normalised float32 vectors keyed by int64 ids."""

    facts: dict[str, Any]
    ntotal: int
    dim: int

    def __init__(
        self,
        index: faiss.Index,
        ids: I64,
        store: RowStore | None,
        plan: IndexPlan,
        facts: dict[str, Any],
    ) -> None:
        self._index = index
        self._plan = plan
        self._ids = ids
        # Sorted copy for id -> row look-ups (searchsorted): O(log n), no dict of 1M objects.
        self._order = np.argsort(ids, kind="stable").astype(np.int64)
        self._sorted_ids = ids[self._order]
        # Dense ids (e.g. SQLite rowids) also get a direct id -> row table:
        # a filter of 100k ids then costs one gather instead of 100k binary
        # searches. At most 4 slots per vector (32 bytes) so it stays small.
        self._lut: I64 | None = None
        if ids.shape[0] and int(ids.max()) < 4 * ids.shape[0]:
            self._lut = np.full(int(ids.max()) + 1, -1, dtype=np.int64)
            self._lut[ids] = np.arange(ids.shape[0], dtype=np.int64)
        self.ntotal = int(ids.shape[0])
        # IndexPreTransform reports its input dimension, so this holds with PCA too.
        self.dim = int(index.d)
        if store is None:
            flat: Any = index  # faiss' stubs omit IndexFlat.get_xb
            store = RamRows(
                faiss.rev_swig_ptr(flat.get_xb(), self.ntotal * self.dim).reshape(
                    self.ntotal, self.dim
                )
                if self.ntotal
                else np.zeros((0, self.dim), dtype=np.float32)
            )
        self._store = store
        # Up to this many allowed ids, an ANN index answers a filtered query by
        # exact brute force over the subset: exact by construction and cheaper
        # than an IVF scan that skips nearly all it reads. Above it, gathering
        # the rows (2048 x 1280-d float32 = 10 MB per query) costs more than
        # scanning with a selector. The flat index always scans with a
        # selector: it scores only the allowed rows, in place.
        self._brute_max = _BRUTE_FORCE_MAX if plan.kind == "ivfpq" else 0
        self.facts = facts
        self.facts["brute_force_max"] = self._brute_max

    # ------------------------------------------------------------------ build
    @classmethod
    def build(
        cls,
        vectors: NDArray[Any],
        ids: NDArray[Any],
        *,
        exact_max: int,
        memory_budget_mb: int,
        params: AnnParams | None = None,
        scratch_dir: Path | None = None,
    ) -> VectorIndex:
        """Index ``vectors`` (n, d) L2-normalised under the caller's ``ids`` (n,).

        ``vectors`` may be a (float32 or float16) memmap: it is read in chunks.
        When the re-rank vectors are too big for the memory budget they go to
        an unlinked file in ``scratch_dir`` (default: the system temp dir; pick
        a disk, not a tmpfs) until :meth:`save` copies them beside the index.
        """
        t0 = time.perf_counter()
        ids64 = checked_ids(vectors, ids)
        n, d = (int(s) for s in vectors.shape)
        plan = plan_index(
            n, d, exact_max=exact_max, memory_budget_mb=memory_budget_mb, params=params
        )
        index, store = make_index(vectors, plan, scratch_dir)
        facts = index_facts(plan, index, n, d, exact_max, memory_budget_mb)
        facts["build_s"] = round(time.perf_counter() - t0, 3)
        return cls(index, ids64, store, plan, facts)

    # ----------------------------------------------------------------- search
    def search(
        self, queries: NDArray[Any], k: int, allowed_ids: NDArray[Any] | None = None
    ) -> tuple[F32, I64]:
        """Top-``k`` (scores, ids) per query, best first; -1 ids (-inf scores) pad.

        With ``allowed_ids`` only those ids can be returned, and ``k`` of them
        are returned whenever at least ``k`` exist in the index.
        """
        q = self._check_queries(queries)
        if k < 1:
            raise BadParameter(f"k must be >= 1, got {k}")
        m = q.shape[0]
        empty = (
            np.full((m, k), -np.inf, dtype=np.float32),
            np.full((m, k), -1, dtype=np.int64),
        )
        if m == 0 or self.ntotal == 0:
            return empty
        rows: I64 | None = None
        if allowed_ids is not None:
            rows = self._rows_of(np.asarray(allowed_ids), strict=False)
            if rows.shape[0] == 0:
                return empty
        with omp_threads(1 if m < _PARALLEL_MIN_QUERIES else None):
            if rows is not None and rows.shape[0] <= self._brute_max:
                scores, found = self._brute_force(q, rows, k)
            elif self._plan.kind == "flat":
                scores, found = self._flat_search(q, k, rows)
            else:
                scores, found = self._ann_search(q, k, rows)
        out_ids = np.where(found >= 0, self._ids[np.maximum(found, 0)], -1).astype(np.int64)
        scores = np.where(found >= 0, scores, -np.inf).astype(np.float32)
        return scores, out_ids

    def reconstruct(self, ids: NDArray[Any]) -> F32:
        """The stored vectors of ``ids`` (float16-rounded when the store is float16)."""
        rows = self._rows_of(np.asarray(ids), strict=True)
        return self._gather(rows)

    def tuned(
        self,
        *,
        nprobe: int | None = None,
        shortlist_min: int | None = None,
        shortlist_factor: int | None = None,
    ) -> VectorIndex:
        """A view of this index with other search-time knobs (shares all data).

        Changes the recall/speed trade-off without rebuilding; the flat index ignores them.
        """
        plan = self._plan
        new_plan = dataclasses.replace(
            plan,
            nprobe=min(plan.nlist, nprobe) if nprobe and plan.nlist else plan.nprobe,
            shortlist_min=plan.shortlist_min if shortlist_min is None else shortlist_min,
            shortlist_factor=(
                plan.shortlist_factor if shortlist_factor is None else shortlist_factor
            ),
        )
        view = copy.copy(self)
        view._plan = new_plan
        view.facts = copy.deepcopy(self.facts)
        if plan.kind == "ivfpq":
            for key in ("nprobe", "shortlist_min", "shortlist_factor"):
                view.facts["params"][key] = getattr(new_plan, key)
        return view

    # ------------------------------------------------------------- save/load
    def save(self, directory: Path) -> dict[str, str]:
        """Write the index files into ``directory``; returns file name -> sha256."""
        return persist.save(directory, self._index, self._ids, self._store, self._plan, self.facts)

    @classmethod
    def load(cls, directory: Path) -> VectorIndex:
        """Open a saved index; ``SnapshotError`` if a file is missing, truncated or corrupt."""
        saved = persist.load(directory)
        return cls(saved.index, saved.ids, saved.store, saved.plan, saved.facts)

    # -------------------------------------------------------------- internals
    def _check_queries(self, queries: NDArray[Any]) -> F32:
        q = np.asarray(queries)
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise BadParameter(f"queries must have shape (m, {self.dim}), got {q.shape}")
        return np.ascontiguousarray(q, dtype=np.float32)

    def _rows_of(self, ids: NDArray[Any], *, strict: bool) -> I64:
        """Row numbers of ``ids``; unknown ids are dropped (or ``NotFound`` when strict)."""
        ids64 = ids.astype(np.int64, copy=False).ravel()
        if self.ntotal == 0:
            if strict and ids64.size:
                raise NotFound(f"id {int(ids64[0])} is not in the vector index")
            return np.zeros(0, dtype=np.int64)
        if self._lut is not None:
            inside = (ids64 >= 0) & (ids64 < self._lut.shape[0])
            rows = np.full(ids64.shape[0], -1, dtype=np.int64)
            rows[inside] = self._lut[ids64[inside]]
            known = rows >= 0
        else:
            pos = np.minimum(np.searchsorted(self._sorted_ids, ids64), self.ntotal - 1)
            known = self._sorted_ids[pos] == ids64
            rows = self._order[pos]
        if strict:
            if not known.all():
                missing = int(ids64[~known][0])
                raise NotFound(f"id {missing} is not in the vector index")
            return rows
        rows = rows[known]
        # Filters are sets. Brute force needs each row once; a large set goes
        # to a bitmap selector, which dedupes by itself, so skip the sort.
        return np.unique(rows) if rows.shape[0] <= self._brute_max else rows

    def _gather(self, rows: I64) -> F32:
        return self._store.rows(rows)

    def _brute_force(self, q: F32, rows: I64, k: int) -> tuple[F32, I64]:
        vecs = self._gather(rows)
        out_s = np.empty((q.shape[0], k), dtype=np.float32)
        out_r = np.empty((q.shape[0], k), dtype=np.int64)
        for i in range(q.shape[0]):
            sc, pos = topk(inner_products(q[i], vecs)[None, :], k)
            out_s[i] = sc[0]
            out_r[i] = np.where(pos[0] >= 0, rows[np.maximum(pos[0], 0)], -1)
        return out_s, out_r

    def _selector(self, rows: I64) -> tuple[faiss.IDSelector, NDArray[np.uint8]]:
        # A bitmap costs n/8 bytes and O(1) per test, whatever the subset size.
        # The bitmap array is returned so the caller keeps it alive while FAISS reads it.
        mask = np.zeros(self.ntotal, dtype=bool)
        mask[rows] = True
        bits = np.packbits(mask, bitorder="little")
        return faiss.IDSelectorBitmap(self.ntotal, faiss.swig_ptr(bits)), bits

    def _flat_search(self, q: F32, k: int, rows: I64 | None) -> tuple[F32, I64]:
        if rows is None:
            scores, found = self._index.search(q, k)
        else:
            sel, bits = self._selector(rows)
            params = faiss.SearchParameters()
            params.sel = sel
            scores, found = self._index.search(q, k, params=params)
            del bits
        return scores.astype(np.float32), found.astype(np.int64)

    def _search_params(self, nprobe: int, sel: faiss.IDSelector | None) -> Any:
        # Attributes set one by one: faiss' stubs do not declare the keyword
        # constructors. The selector is kept alive by the caller.
        ivf = faiss.SearchParametersIVF()
        ivf.nprobe = nprobe
        if sel is not None:
            ivf.sel = sel
        if self._plan.pca_dim is None:
            return ivf
        pre = faiss.SearchParametersPreTransform()
        pre.index_params = ivf
        return pre

    def _ann_search(self, q: F32, k: int, rows: I64 | None) -> tuple[F32, I64]:
        plan = self._plan
        available = self.ntotal if rows is None else rows.shape[0]
        need = min(k, available)
        shortlist = max(k, plan.shortlist_min, k * plan.shortlist_factor)
        sel, bits = self._selector(rows) if rows is not None else (None, None)
        nprobe = plan.nprobe
        _, cand = self._index.search(q, shortlist, params=self._search_params(nprobe, sel))
        # Widen the scan for queries whose probed lists held fewer than k
        # (allowed) vectors; at nprobe == nlist every vector is scanned, so
        # k results are guaranteed whenever k exist.
        while nprobe < plan.nlist:
            short = (cand >= 0).sum(axis=1) < need
            if not short.any():
                break
            nprobe = min(plan.nlist, nprobe * 4)
            params = self._search_params(nprobe, sel)
            _, cand[short] = self._index.search(q[short], shortlist, params=params)
        del bits
        return self._rerank(q, cand.astype(np.int64), k)

    def _rerank(self, q: F32, cand: I64, k: int) -> tuple[F32, I64]:
        out_s = np.full((q.shape[0], k), -np.inf, dtype=np.float32)
        out_r = np.full((q.shape[0], k), -1, dtype=np.int64)
        for i in range(q.shape[0]):
            rows = cand[i][cand[i] >= 0]
            sc, pos = topk(inner_products(q[i], self._gather(rows))[None, :], k)
            out_s[i] = sc[0]
            out_r[i] = np.where(pos[0] >= 0, rows[np.maximum(pos[0], 0)], -1)
        return out_s, out_r
