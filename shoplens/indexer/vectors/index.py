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
Training runs on one thread too (see ``_train_ann``).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from numpy.typing import NDArray

from shoplens.errors import BadParameter, NotFound, SnapshotError
from shoplens.files.atomic import sha256_file
from shoplens.indexer.vectors import files as vf
from shoplens.indexer.vectors.plan import AnnParams, IndexPlan, plan_index
from shoplens.indexer.vectors.rows import DiskRows, RamRows, RowStore

F32 = NDArray[np.float32]
I64 = NDArray[np.int64]

_INDEX_FILE = "vectors.faiss"
_IDS_FILE = "vectors.ids.npy"
_STORE_FILE = "vectors.store.npy"
# Rows processed per step when adding, converting or copying: bounds the
# temporary float32 copies to ~300 MB at 1280-d.
_ROW_CHUNK = 65_536
# Largest allowed-id subset searched by brute force in the ANN tier (see __init__).
_BRUTE_FORCE_MAX = 2048
# Batches smaller than this search on one OpenMP thread: a request's query
# gains nothing from a thread team, and on a few shared cores the team's
# barriers cost more than the search whenever the service runs several
# requests at once.
_PARALLEL_MIN_QUERIES = 32


@contextmanager
def _omp_threads(n: int | None) -> Iterator[None]:
    """Run FAISS with ``n`` OpenMP threads in this thread only, then restore.

    libgomp keeps the thread count per calling thread, so this never changes
    what concurrent searches on other threads use.
    """
    if n is None:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _topk(scores: F32, k: int) -> tuple[F32, I64]:
    """Best ``k`` columns per row, sorted by descending score; -1 / -inf padded."""
    m, a = scores.shape
    out_s = np.full((m, k), -np.inf, dtype=np.float32)
    out_i = np.full((m, k), -1, dtype=np.int64)
    if a == 0:
        return out_s, out_i
    kk = min(k, a)
    part = (
        np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        if kk < a
        else np.tile(np.arange(a), (m, 1))
    )
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    out_s[:, :kk] = np.take_along_axis(vals, order, axis=1)
    out_i[:, :kk] = np.take_along_axis(part, order, axis=1)
    # Candidates that were padding upstream keep -inf; they must not surface as ids.
    out_i[~np.isfinite(out_s)] = -1
    return out_s, out_i


def _inner_products(query: F32, vecs: F32) -> F32:
    """``vecs @ query`` with FAISS' single-threaded SIMD kernel.

    Not numpy: its BLAS gemv starts an OpenBLAS thread team per call, which on
    a busy 2-core machine measured 20x slower (1.9 ms vs 0.09 ms CPU for
    1000 x 1280-d) and cannot be limited per calling thread.
    """
    vecs = np.ascontiguousarray(vecs, dtype=np.float32)
    query = np.ascontiguousarray(query, dtype=np.float32)
    out = np.empty(vecs.shape[0], dtype=np.float32)
    if vecs.shape[0]:
        faiss.fvec_inner_products_ny(  # type: ignore[attr-defined]  # not in the stubs
            faiss.swig_ptr(out),
            faiss.swig_ptr(query),
            faiss.swig_ptr(vecs),
            vecs.shape[1],
            vecs.shape[0],
        )
    return out


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
        if vectors.ndim != 2:
            raise BadParameter(f"vectors must be 2-D (n, d), got shape {vectors.shape}")
        n, d = (int(s) for s in vectors.shape)
        ids_arr = np.asarray(ids)
        if ids_arr.shape != (n,):
            raise BadParameter(f"ids must have shape ({n},), got {ids_arr.shape}")
        if n and not np.issubdtype(ids_arr.dtype, np.integer):
            raise BadParameter(f"ids must be integers, got {ids_arr.dtype}")
        ids64 = ids_arr.astype(np.int64, copy=True)
        if n and ids64.min() < 0:
            raise BadParameter("ids must be >= 0 (-1 marks padding in results)")
        if n and np.unique(ids64).shape[0] != n:
            raise BadParameter("ids must be unique")
        if d < 1:
            raise BadParameter("vectors must have at least one dimension")
        plan = plan_index(
            n, d, exact_max=exact_max, memory_budget_mb=memory_budget_mb, params=params
        )
        if plan.kind == "flat":
            index: faiss.Index = faiss.IndexFlatIP(d)
            for s in range(0, n, _ROW_CHUNK):
                index.add(np.ascontiguousarray(vectors[s : s + _ROW_CHUNK], dtype=np.float32))
            store = None
        else:
            index = _train_ann(vectors, plan)
            for s in range(0, n, _ROW_CHUNK):
                index.add(np.ascontiguousarray(vectors[s : s + _ROW_CHUNK], dtype=np.float32))
            store = _make_store(vectors, plan, scratch_dir)
        facts = _facts(plan, index, n, d, exact_max, memory_budget_mb)
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
        with _omp_threads(1 if m < _PARALLEL_MIN_QUERIES else None):
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
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        files: dict[str, dict[str, Any]] = {}
        path = directory / _INDEX_FILE
        faiss.write_index(self._index, str(path))
        files[_INDEX_FILE] = {"sha256": sha256_file(path), "size": path.stat().st_size}
        sha, size = vf.write_npy_chunks(
            directory / _IDS_FILE, np.dtype(np.int64), (self.ntotal,), iter([self._ids])
        )
        files[_IDS_FILE] = {"sha256": sha, "size": size}
        if self._plan.rerank_store != "index":
            store = self._store
            sha, size = vf.write_npy_chunks(
                directory / _STORE_FILE, store.dtype, store.shape, store.chunks(_ROW_CHUNK)
            )
            files[_STORE_FILE] = {"sha256": sha, "size": size}
        body = {
            "format": vf.FORMAT_VERSION,
            "files": files,
            "plan": self._plan.to_dict(),
            "facts": self.facts,
        }
        sha, _ = vf.write_manifest(directory, body)
        out = {name: meta["sha256"] for name, meta in files.items()}
        out[vf.MANIFEST] = sha
        return out

    @classmethod
    def load(cls, directory: Path) -> VectorIndex:
        """Open a saved index; ``SnapshotError`` if a file is missing, truncated or corrupt."""
        directory = Path(directory)
        body = vf.read_manifest(directory)  # verifies sizes and checksums first
        try:
            plan = IndexPlan(**body["plan"])
            facts = dict(body["facts"])
            index = faiss.read_index(str(directory / _INDEX_FILE))
            ids = np.load(directory / _IDS_FILE, allow_pickle=False)
            store: RowStore | None = None
            if plan.rerank_store == "ram-f32":
                store = RamRows(np.load(directory / _STORE_FILE, allow_pickle=False))
            elif plan.rerank_store == "disk-f16":
                store = DiskRows(directory / _STORE_FILE)
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as e:
            raise SnapshotError(f"vector index in {directory} cannot be read: {e}") from e
        n = int(facts["ntotal"])
        if ids.dtype != np.int64 or ids.shape != (n,) or index.ntotal != n:
            raise SnapshotError(f"vector index in {directory} is inconsistent (counts differ)")
        if store is not None and store.shape != (n, int(facts["dim"])):
            raise SnapshotError(f"vector index in {directory} is inconsistent (store shape)")
        return cls(index, ids, store, plan, facts)

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
            sc, pos = _topk(_inner_products(q[i], vecs)[None, :], k)
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
            sc, pos = _topk(_inner_products(q[i], self._gather(rows))[None, :], k)
            out_s[i] = sc[0]
            out_r[i] = np.where(pos[0] >= 0, rows[np.maximum(pos[0], 0)], -1)
        return out_s, out_r


def _train_ann(vectors: NDArray[Any], plan: IndexPlan) -> faiss.Index:
    n, d = vectors.shape
    spec = f"IVF{plan.nlist},PQ{plan.pq_m}x4fs"
    if plan.pca_dim is not None:
        spec = f"PCA{plan.pca_dim}," + spec
    index = faiss.index_factory(d, spec, faiss.METRIC_INNER_PRODUCT)
    ivf = faiss.extract_index_ivf(index)
    # 10 k-means iterations instead of 25: the lists only route candidates to
    # the exact re-ranking, and training time dominates the build at 1M.
    ivf.cp.niter = 10
    # Sorted sample rows: sequential reads when ``vectors`` is a memmap.
    rng = np.random.default_rng(0)
    rows = np.sort(rng.choice(n, size=plan.train_n, replace=False))
    sample = np.ascontiguousarray(vectors[rows], dtype=np.float32)
    # One thread: PQ training runs hundreds of tiny k-means (16 centroids of
    # 4-d sub-vectors) whose OpenMP barriers dominate; measured 9x slower with
    # 2 threads than with 1 on a busy 2-core machine (benchmarks/ann.py).
    with _omp_threads(1):
        index.train(sample)
    return index


def _make_store(vectors: NDArray[Any], plan: IndexPlan, scratch: Path | None) -> RowStore:
    n, d = vectors.shape
    if plan.rerank_store == "ram-f32":
        return RamRows(np.array(vectors, dtype=np.float32, copy=True, order="C"))
    fd, name = tempfile.mkstemp(prefix="shoplens-vectors-", suffix=".npy", dir=scratch)
    os.close(fd)
    try:
        chunks = (vectors[s : s + _ROW_CHUNK] for s in range(0, n, _ROW_CHUNK))
        vf.write_npy_chunks(Path(name), np.dtype(np.float16), (n, d), chunks)
        return DiskRows(Path(name), unlink=True)
    finally:
        Path(name).unlink(missing_ok=True)


def _facts(
    plan: IndexPlan, index: faiss.Index, n: int, d: int, exact_max: int, budget_mb: int
) -> dict[str, Any]:
    serialized = int(faiss.serialize_index(index).nbytes) if plan.kind == "ivfpq" else n * d * 4
    store_bytes = {"index": 0, "ram-f32": n * d * 4, "disk-f16": n * d * 2}[plan.rerank_store]
    resident = serialized + n * 24 + (store_bytes if plan.rerank_store == "ram-f32" else 0)
    params: dict[str, Any] = {"rerank_store": plan.rerank_store}
    if plan.kind == "ivfpq":
        params |= {
            "nlist": plan.nlist,
            "nprobe": plan.nprobe,
            "pq_m": plan.pq_m,
            "pq_nbits": 4,
            "pca_dim": plan.pca_dim,
            "train_n": plan.train_n,
            "shortlist_min": plan.shortlist_min,
            "shortlist_factor": plan.shortlist_factor,
        }
    return {
        "type": "flat-ip" if plan.kind == "flat" else "ivf-pq-fastscan+rerank",
        "params": params,
        "reason": plan.reason,
        "ntotal": n,
        "dim": d,
        # Resident bytes after load: FAISS structures + id maps (+ RAM store).
        "bytes": resident,
        "bytes_per_vector": round(resident / n, 1) if n else 0.0,
        "rerank_store_bytes": store_bytes,
        "exact_max": exact_max,
        "memory_budget_mb": budget_mb,
        "faiss_version": faiss.__version__,
        **plan.extra,
    }
