"""The small numeric kernels of searching and training, each on the calling thread only.

FAISS parallelises with OpenMP, whose thread count libgomp keeps per calling
thread: :func:`omp_threads` sets it for one block of this thread, so worker
threads searching at once never change each other's. :func:`topk` and
:func:`inner_products` score re-ranked candidates exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import faiss
import numpy as np

from shoplens.indexer.vectors.rows import F32, I64


@contextmanager
def omp_threads(n: int | None) -> Iterator[None]:
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


def topk(scores: F32, k: int) -> tuple[F32, I64]:
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


def inner_products(query: F32, vecs: F32) -> F32:
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
