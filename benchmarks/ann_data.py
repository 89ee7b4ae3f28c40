"""The data of the vector index benchmark: a synthetic, clustered distribution of
image-like embeddings, its base sets on disk, and the exact answers to compare with.

Imported by :mod:`benchmarks.ann`, which sets the OpenMP wait policy before
FAISS loads; run that, not this.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Protocol

import faiss
import numpy as np
from numpy.typing import NDArray

DIM = 1280
K = 10
CLUSTERS = 2048
CATEGORIES = 64
SPREAD = 0.7  # norm of a product centre's offset from its category centre
RANK = 16
VARIATION = 0.5  # norm of the within-product low-rank variation
NOISE = 0.4  # norm of the isotropic noise
SEED = 20251125
_GEN_CHUNK = 2048
_GT_CHUNK = 200_000


class Generator:
    """The synthetic distribution: fixed by the seed, sampled in chunks."""

    def __init__(self, dim: int = DIM, clusters: int = CLUSTERS, seed: int = SEED) -> None:
        rng = np.random.default_rng(seed)
        # Power-law spectrum in a random orthonormal basis: variance of
        # direction i ~ 1/(i+1), like the decaying spectra of CNN embeddings.
        basis, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
        scale = (1.0 / np.sqrt(np.arange(1, dim + 1))).astype(np.float32)
        self.mix = (scale[:, None] * basis.T).astype(np.float32)  # (dim, dim)
        # Two levels, so clusters overlap as products of one category do: a
        # few dozen category centres, each product cluster a perturbation of one.
        cats = rng.standard_normal((CATEGORIES, dim)).astype(np.float32) @ self.mix
        cats /= np.linalg.norm(cats, axis=1, keepdims=True)
        own = rng.standard_normal((clusters, dim)).astype(np.float32) @ self.mix
        own /= np.linalg.norm(own, axis=1, keepdims=True)
        centres = cats[rng.integers(0, CATEGORIES, clusters)] + np.float32(SPREAD) * own
        self.centres = centres / np.linalg.norm(centres, axis=1, keepdims=True)
        # Each cluster varies along its own few directions (pose, lighting,
        # background of one product line) with ~0.6 of the centre's norm.
        dirs = rng.standard_normal((clusters, RANK, dim)).astype(np.float32)
        dirs /= np.linalg.norm(dirs, axis=2, keepdims=True)
        self.dirs = dirs * np.float32(VARIATION / np.sqrt(RANK))
        self.noise = np.float32(NOISE / np.sqrt(dim))
        self.dim = dim
        self.clusters = clusters

    def sample(self, n: int, rng: np.random.Generator) -> NDArray[np.float32]:
        label = rng.integers(0, self.clusters, n)
        coef = rng.standard_normal((n, RANK)).astype(np.float32)
        x = self.centres[label] + np.einsum("nr,nrd->nd", coef, self.dirs[label])
        x += self.noise * rng.standard_normal((n, self.dim), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out: NDArray[np.float32] = x.astype(np.float32)
        return out


class Sampler(Protocol):
    """What :func:`make_base` draws vectors from."""

    @property
    def dim(self) -> int: ...
    def sample(self, m: int, rng: np.random.Generator) -> NDArray[np.float32]: ...


def make_base(
    path: Path,
    n: int,
    gen: Sampler,
    *,
    dtype: type[np.floating[Any]] = np.float32,
    seed: int = SEED,
    chunk: int = _GEN_CHUNK,
) -> NDArray[Any]:
    """Write (or reuse) ``n`` base vectors as a ``dtype`` .npy; returns a read-only memmap."""
    if path.exists():
        old: NDArray[Any] = np.load(path, mmap_mode="r")
        if old.shape == (n, gen.dim) and old.dtype == dtype:
            return old
    tmp = path.with_suffix(".part")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(n, gen.dim))
    rng = np.random.default_rng([seed, n])
    for s in range(0, n, chunk):
        out[s : s + chunk] = gen.sample(min(chunk, n - s), rng)
    out.flush()
    del out
    os.replace(tmp, path)
    base: NDArray[Any] = np.load(path, mmap_mode="r")
    return base


def _merge(
    best: tuple[NDArray[np.float32], NDArray[np.int64]],
    d: NDArray[np.float32],
    i: NDArray[np.int64],
    k: int,
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    all_s = np.concatenate([best[0], d], axis=1)
    all_i = np.concatenate([best[1], i], axis=1)
    top = np.argsort(-all_s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(all_s, top, 1), np.take_along_axis(all_i, top, 1)


def _empty(m: int, k: int) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    return np.full((m, k), -np.inf, dtype=np.float32), np.full((m, k), -1, dtype=np.int64)


def exact_topk(
    base: NDArray[np.float32],
    q: NDArray[np.float32],
    k: int,
    bench_q: int,
    allowed: dict[str, NDArray[np.bool_]],
    filtered_q: int,
) -> tuple[NDArray[np.int64], dict[str, NDArray[np.int64]], float, float]:
    """Exact top-k rows by chunks, for all of ``q`` and, per ``allowed`` mask,
    for the first ``filtered_q`` queries restricted to the mask; plus the
    flat-search seconds for ``bench_q`` queries, 1 thread, batched and singly."""
    n = base.shape[0]
    best = _empty(q.shape[0], k)
    best_f = {name: _empty(filtered_q, k) for name in allowed}
    batch_s = single_s = 0.0
    single_q = max(1, bench_q // 10)
    for s in range(0, n, _GT_CHUNK):
        chunk = np.ascontiguousarray(base[s : s + _GT_CHUNK])
        flat = faiss.IndexFlatIP(base.shape[1])
        flat.add(chunk)
        faiss.omp_set_num_threads(2)
        d, i = flat.search(q, k)
        best = _merge(best, d, i + s, k)
        for name, mask in allowed.items():
            bits = np.packbits(mask[s : s + chunk.shape[0]], bitorder="little")
            params = faiss.SearchParameters()
            params.sel = faiss.IDSelectorBitmap(chunk.shape[0], faiss.swig_ptr(bits))
            d, i = flat.search(q[:filtered_q], k, params=params)
            best_f[name] = _merge(best_f[name], d, np.where(i >= 0, i + s, -1), k)
        faiss.omp_set_num_threads(1)
        t = time.perf_counter()
        flat.search(q[:bench_q], k)
        batch_s += time.perf_counter() - t
        t = time.perf_counter()
        for j in range(single_q):
            flat.search(q[j : j + 1], k)
        single_s += (time.perf_counter() - t) * bench_q / single_q
        del flat, chunk
    faiss.omp_set_num_threads(2)
    return best[1], {name: b[1] for name, b in best_f.items()}, batch_s, single_s
