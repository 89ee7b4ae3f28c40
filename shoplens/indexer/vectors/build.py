"""Building the FAISS side of a vector index: checked inputs, the trained index
filled in chunks, the re-rank store, and the build facts saved with it.

``vectors`` may be a (float32 or float16) memmap: everything here reads it in
chunks of :data:`~shoplens.indexer.vectors.rows.ROW_CHUNK` rows.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from numpy.typing import NDArray

from shoplens.errors import BadParameter
from shoplens.indexer.vectors import files as vf
from shoplens.indexer.vectors.kernels import omp_threads
from shoplens.indexer.vectors.plan import IndexPlan
from shoplens.indexer.vectors.rows import I64, ROW_CHUNK, DiskRows, RamRows, RowStore


def checked_ids(vectors: NDArray[Any], ids: NDArray[Any]) -> I64:
    """``ids`` as a fresh int64 array, after checking both arrays can be indexed."""
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
    return ids64


def make_index(
    vectors: NDArray[Any], plan: IndexPlan, scratch_dir: Path | None
) -> tuple[faiss.Index, RowStore | None]:
    """The FAISS index of ``plan`` holding ``vectors``, and its re-rank store.

    The store is None for the flat index (its own vectors are re-read).
    """
    if plan.kind == "flat":
        index: faiss.Index = faiss.IndexFlatIP(int(vectors.shape[1]))
        _add(index, vectors)
        return index, None
    index = _train_ann(vectors, plan)
    _add(index, vectors)
    return index, _make_store(vectors, plan, scratch_dir)


def _add(index: faiss.Index, vectors: NDArray[Any]) -> None:
    for s in range(0, int(vectors.shape[0]), ROW_CHUNK):
        index.add(np.ascontiguousarray(vectors[s : s + ROW_CHUNK], dtype=np.float32))


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
    with omp_threads(1):
        index.train(sample)
    return index


def _make_store(vectors: NDArray[Any], plan: IndexPlan, scratch: Path | None) -> RowStore:
    n, d = vectors.shape
    if plan.rerank_store == "ram-f32":
        return RamRows(np.array(vectors, dtype=np.float32, copy=True, order="C"))
    fd, name = tempfile.mkstemp(prefix="shoplens-vectors-", suffix=".npy", dir=scratch)
    os.close(fd)
    try:
        chunks = (vectors[s : s + ROW_CHUNK] for s in range(0, n, ROW_CHUNK))
        vf.write_npy_chunks(Path(name), np.dtype(np.float16), (n, d), chunks)
        return DiskRows(Path(name), unlink=True)
    finally:
        Path(name).unlink(missing_ok=True)


def index_facts(
    plan: IndexPlan, index: faiss.Index, n: int, d: int, exact_max: int, budget_mb: int
) -> dict[str, Any]:
    """The build facts saved with the index: type, parameters, why, and its memory."""
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
