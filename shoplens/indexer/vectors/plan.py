"""Which vector index to build for a collection size and a memory budget.

Kept apart from :mod:`shoplens.indexer.vectors.index` so the choice (and the reason
for it) can be read, tested and benchmarked without building anything.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from shoplens.errors import BadParameter

IndexKind = Literal["flat", "ivfpq"]
# Where the full vectors used for exact re-ranking live:
#   "index"     - inside the flat FAISS index (exact tier, nothing extra);
#   "ram-f32"   - a float32 array in RAM: exact scores, used when it fits the budget;
#   "disk-f16"  - a float16 .npy on disk whose rows re-ranking reads with
#                 pread (see vectors_store): 1M x 1280-d is 2.6 GB on disk and
#                 nothing of it in the process, so it fits a ~1.5 GB budget;
#                 hot rows stay in the (shared, reclaimable) page cache. Scores
#                 are exact up to float16 rounding of the stored vector (< 1e-3).
RerankStore = Literal["index", "ram-f32", "disk-f16"]

MB = 1024 * 1024
# Below this, k-means has too few points for the IVF lists and the 16
# centroids of each PQ sub-quantizer, and exact search is fast anyway.
ANN_MIN_VECTORS = 1024


@dataclass(frozen=True)
class AnnParams:
    """Knobs of the ANN tier; ``None`` means "derive from the collection size".

    Defaults were tuned with ``python -m benchmarks.ann`` (see
    benchmarks/results/ann.md) for recall@10 >= 0.95 after re-ranking.
    """

    nlist: int | None = None  # IVF lists; default ~sqrt(n)
    nprobe: int | None = None  # lists scanned per query; default from nlist
    # Dimensions per PQ sub-quantizer (4-bit fast-scan codes): 4 -> d/8 bytes per vector.
    pq_dsub: int = 4
    # Candidates re-ranked exactly per query: max(shortlist_min, k * shortlist_factor).
    shortlist_min: int = 100
    shortlist_factor: int = 10
    # Optional PCA before the IVF (faiss.PCAMatrix); re-ranking still uses full vectors.
    pca_dim: int | None = None
    # Training sample: this many points per IVF list (bounded by n and train_max).
    train_per_list: int = 64
    train_max: int = 131_072
    # Force a re-rank store instead of choosing it from the budget (benchmarks, tests).
    rerank_store: RerankStore | None = None


@dataclass(frozen=True)
class IndexPlan:
    kind: IndexKind
    rerank_store: RerankStore
    reason: str
    nlist: int = 0
    nprobe: int = 0
    pq_m: int = 0
    pca_dim: int | None = None
    train_n: int = 0
    shortlist_min: int = 0
    shortlist_factor: int = 0
    # Resident-memory estimate (bytes) of what stays in RAM after load.
    est_resident_bytes: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pq_m(dim: int, dsub: int) -> int:
    """Number of sub-quantizers: the requested sub-vector width if it divides ``dim``."""
    for width in (dsub, 4, 2, 1):
        if width >= 1 and dim % width == 0:
            m = dim // width
            # Fast-scan packs codes two per byte in blocks; an odd M would be padded.
            if m % 2 == 0 or m == 1:
                return m
    return dim


def default_nlist(n: int) -> int:
    # ~sqrt(n) keeps the coarse quantizer cheap per query (nlist x dim flops)
    # and k-means training affordable on a few cores; fast-scan makes the
    # resulting long lists cheap to scan. At least 39 training points per list
    # (FAISS warns below that).
    return max(1, min(round(math.sqrt(n)), n // 39))


def default_nprobe(nlist: int) -> int:
    return max(1, min(nlist, math.ceil(nlist / 64)))


def plan_index(
    n: int,
    dim: int,
    *,
    exact_max: int,
    memory_budget_mb: int,
    params: AnnParams | None = None,
) -> IndexPlan:
    """Pick the index type for ``n`` vectors of ``dim`` floats under a memory budget."""
    if n < 0 or dim < 1:
        raise BadParameter(f"cannot index {n} vectors of dimension {dim}")
    flat_bytes = n * dim * 4 + n * 24
    budget = memory_budget_mb * MB
    if n <= exact_max or n < ANN_MIN_VECTORS:
        why = (
            f"n={n} <= exact_max={exact_max}"
            if n <= exact_max
            else f"n={n} < {ANN_MIN_VECTORS} (too few to train IVF/PQ)"
        )
        return IndexPlan(
            kind="flat",
            rerank_store="index",
            reason=f"{why}: exact inner-product search",
            est_resident_bytes=flat_bytes,
        )
    p = params or AnnParams()
    work_dim = p.pca_dim or dim
    if p.pca_dim is not None and not 1 <= p.pca_dim <= dim:
        raise BadParameter(f"pca_dim must be in [1, {dim}], got {p.pca_dim}")
    nlist = p.nlist or default_nlist(n)
    nprobe = min(nlist, p.nprobe or default_nprobe(nlist))
    pq_m = _pq_m(work_dim, p.pq_dsub)
    train_n = min(n, max(nlist * p.train_per_list, 10_000), p.train_max)
    # Codes (4-bit) + FAISS' int64 list ids + coarse centroids + PCA matrix +
    # our id arrays (row->id, sorted ids, their rows).
    ann_bytes = n * (pq_m // 2 + 8) + nlist * work_dim * 4 + work_dim * dim * 4 + n * 24
    f32_bytes = n * dim * 4
    if p.rerank_store is not None:
        store: RerankStore = p.rerank_store
        why = "forced by parameters"
    elif ann_bytes + f32_bytes <= budget:
        store = "ram-f32"
        why = (
            f"ANN structures {ann_bytes / MB:.0f} MB + float32 vectors {f32_bytes / MB:.0f} MB "
            f"fit the {memory_budget_mb} MB budget: re-rank from RAM (exact scores)"
        )
    else:
        store = "disk-f16"
        why = (
            f"float32 vectors ({f32_bytes / MB:.0f} MB) do not fit the {memory_budget_mb} MB "
            f"budget next to the ANN structures ({ann_bytes / MB:.0f} MB): re-rank from "
            "float16 vectors read from disk (page cache, not process memory)"
        )
    resident = ann_bytes + (f32_bytes if store == "ram-f32" else 0)
    reason = (
        f"n={n} > exact_max={exact_max}: IVF{nlist} + PQ{pq_m}x4 fast-scan"
        f"{f' after PCA{work_dim}' if p.pca_dim else ''}, exact re-ranking of a shortlist; " + why
    )
    extra: dict[str, Any] = {}
    if resident > budget:
        extra["over_budget"] = True
    return IndexPlan(
        kind="ivfpq",
        rerank_store=store,
        reason=reason,
        nlist=nlist,
        nprobe=nprobe,
        pq_m=pq_m,
        pca_dim=p.pca_dim,
        train_n=train_n,
        shortlist_min=p.shortlist_min,
        shortlist_factor=p.shortlist_factor,
        est_resident_bytes=resident,
        extra=extra,
    )
