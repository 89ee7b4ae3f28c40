"""Geometric re-ranking of a photo search's short list with local features.

Global embeddings blur what tells packaged siblings apart (the printed name, a
logo, a flavour line); local features see it. For the first
:data:`RERANK_TOP` products of a photo search, the shopper's photo is matched
against each product's best catalog photo with RootSIFT keypoints (OpenCV, no
weights), ratio-tested, and verified by a RANSAC homography; every
inlier above :data:`MIN_INLIERS` adds :data:`INLIER_WEIGHT` to the product's
score (capped at :data:`MAX_INLIERS`). A product in the photo that is also in
the catalog photo gets tens of consistent matches; a different product of the
same shape gets a handful.

Used on catalogs with few photos per product (the studio pipeline,
``facts["studio"]`` of a snapshot), where the global features are weakest: a
catalog rich enough to learn an adaptation from is already at R@1 0.86 and
keeps the plain ranking. The parameters were picked on the grocery *train*
photos as queries against the studio catalog, never on the val queries
(``benchmarks/quality_studio.py``, ``benchmarks/results/quality.md``).

Catalog photos' features are computed once per stored photo (their sha256) on
the product's white-background mask (:mod:`shoplens.models.localise`) and kept
in a bounded in-memory cache, filled when a studio snapshot is loaded
(:meth:`CatalogFeatures.warm`), so no search pays a catalog photo's SIFT.

Cost (issue #17: default search p95 at concurrency 1 within 50 ms, re-ranking
included): the query photo's SIFT is most of it, so photos are matched at a
160 px longest side (as good as 200 px on the train queries, ~35% fewer pixels
for the pyramid), and the query's SIFT runs while the photo is embedded
(:class:`QueryPhoto`); each candidate is one brute-force 2-NN pass
(:func:`inlier_counts`), and a homography (USAC) is fitted only where enough
ratio-test survivors can reach the bonus.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from shoplens.indexer.catalog.types import Hit
from shoplens.models.localise import white_background_mask

RERANK_TOP = 10  # products verified per search
MIN_INLIERS = 10  # fewer RANSAC inliers than this is chance agreement
INLIER_WEIGHT = 0.005  # score added per inlier (cosine scale)
MAX_INLIERS = 60  # a near-identical photo gains at most 0.3
# Photos are matched at this longest side: SIFT doubles it internally. On the
# train queries 160 px matched as well as 200 (R@1 0.486 vs 0.485) for ~2/3 of
# the query SIFT; 144 px lost 0.02 and 128 px 0.03.
MAX_SIDE = 160
MAX_KEYPOINTS = 300
RATIO = 0.8  # Lowe's ratio test on descriptor distances
RANSAC_PIXELS = 8.0
# A true match has a high inlier share: a few hundred hypotheses find it; the
# default 2000 mostly spent time on candidates that had none.
RANSAC_ITERATIONS = 500
# The homography is fitted with OpenCV's USAC (``USAC_FAST``) rather than the
# classic ``RANSAC`` flag: 0.05 ms instead of ~1 ms per candidate (the classic
# path's final refinement dominated), the same train-query recall (R@1 0.485 vs
# 0.486, one query apart).
# Catalog photos whose features are kept: at most ~156 KB each (300 x 128
# float32), so at most ~160 MB; a miss costs one SIFT of a 160 px photo (a few ms).
CACHE_ENTRIES = 1024

F32 = NDArray[np.float32]
U8 = NDArray[np.uint8]


@dataclass(frozen=True)
class LocalFeatures:
    """Keypoint positions ``(n, 2)`` and RootSIFT descriptors ``(n, 128)`` (unit L2)."""

    points: F32
    descriptors: F32

    def __len__(self) -> int:
        return int(self.points.shape[0])

    @classmethod
    def empty(cls) -> LocalFeatures:
        return cls(np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32))


@functools.cache
def _cv2() -> Any:
    # Imported on use: OpenCV is a large import the CLI's --help must not pay.
    import cv2

    # The service searches on several threads already; OpenCV's own pool on
    # top of them made one RANSAC take 27 ms instead of 0.3 on a busy 2-core box.
    cv2.setNumThreads(1)

    return cv2


_local = threading.local()


def _sift() -> Any:
    """This thread's SIFT detector (OpenCV detectors are not thread-safe)."""
    det = getattr(_local, "sift", None)
    if det is None:
        det = _cv2().SIFT_create(nfeatures=MAX_KEYPOINTS)
        _local.sift = det
    return det


def gray_for_matching(image: Image.Image) -> tuple[U8, U8]:
    """``(rgb, gray)`` uint8 arrays of ``image`` scaled to :data:`MAX_SIDE`."""
    scale = MAX_SIDE / max(image.size)
    if scale < 1.0:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BILINEAR)
    rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    gray = np.asarray(image.convert("L"), dtype=np.uint8)
    return rgb, gray


def local_features(image: Image.Image, *, studio: bool = False) -> LocalFeatures:
    """RootSIFT features of one photo; ``studio``: keep only the product on white."""
    rgb, gray = gray_for_matching(image)
    mask = white_background_mask(rgb) if studio else None
    try:
        keypoints, desc = _sift().detectAndCompute(gray, mask)
    except _cv2().error:  # degenerate input: the search keeps its plain ranking
        return LocalFeatures.empty()
    if desc is None or not keypoints:
        return LocalFeatures.empty()
    # RootSIFT (Arandjelovic & Zisserman 2012): Hellinger kernel on SIFT, which
    # matches better than L2 on raw SIFT; L1-normalise then sqrt -> unit L2.
    d = np.asarray(desc, dtype=np.float32)
    d = np.sqrt(d / np.maximum(d.sum(axis=1, keepdims=True), 1e-7))
    pts = np.array([k.pt for k in keypoints], dtype=np.float32)
    return LocalFeatures(pts, d.astype(np.float32))


def inliers(query: LocalFeatures, candidate: LocalFeatures) -> int:
    """RANSAC homography inliers among the ratio-tested matches of two photos."""
    return inlier_counts(query, [candidate])[0]


def inlier_counts(query: LocalFeatures, candidates: Sequence[LocalFeatures]) -> list[int]:
    """:func:`inliers` of the query against each candidate of a short list.

    Each candidate is one OpenCV brute-force 2-NN pass (``batchDistance``: arrays
    out, where ``knnMatch`` built hundreds of DMatch objects). Not one stacked
    matrix product: ``cv2.gemm`` and numpy both go through the BLAS, whose
    second thread cost 2x the CPU and stalled for milliseconds on the busy
    2-core box, where this stays on the calling thread (``_cv2``).
    """
    if len(query) < MIN_INLIERS:
        return [0] * len(candidates)
    cv2 = _cv2()
    counts = []
    for candidate in candidates:
        if len(candidate) < 2:
            counts.append(0)
            continue
        dist, nearest = cv2.batchDistance(
            query.descriptors, candidate.descriptors, cv2.CV_32F, normType=cv2.NORM_L2, K=2
        )
        good = np.flatnonzero(dist[:, 0] < RATIO * dist[:, 1])
        if len(good) < MIN_INLIERS:  # cannot reach the bonus: skip the geometry
            counts.append(0)
            continue
        counts.append(_ransac(query.points[good], candidate.points[nearest[good, 0]]))
    return counts


def _ransac(src: F32, dst: F32) -> int:
    cv2 = _cv2()
    try:
        _, mask = cv2.findHomography(
            src, dst, cv2.USAC_FAST, RANSAC_PIXELS, maxIters=RANSAC_ITERATIONS, confidence=0.995
        )
    except cv2.error:  # e.g. all points collinear: no geometry to verify
        return 0
    return 0 if mask is None else int(mask.sum())


def fused_scores(scores: Sequence[float], counts: Sequence[int]) -> list[float]:
    """Cosine scores plus the geometric bonus of each product's inlier count, in [-1, 1]."""
    out = []
    for s, n in zip(scores, counts, strict=True):
        bonus = INLIER_WEIGHT * min(n, MAX_INLIERS) if n >= MIN_INLIERS else 0.0
        out.append(float(np.clip(s + bonus, -1.0, 1.0)))
    return out


class CatalogFeatures:
    """Local features of catalog photos by sha256 (bounded LRU).

    Filled ahead of searches by :meth:`warm` (a snapshot load, a catalog edit);
    a photo past the bound is computed on first use. ``load(sha256)`` returns
    the stored photo (or raises ``OSError`` when it is gone); a photo that
    cannot be read contributes no features. Thread-safe; two threads may
    compute the same entry once each, which is harmless.
    """

    def __init__(self, load: Callable[[str], Image.Image], entries: int = CACHE_ENTRIES) -> None:
        self._load = load
        self._entries = entries
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, LocalFeatures] = OrderedDict()

    def __contains__(self, sha256: object) -> bool:
        with self._lock:
            return sha256 in self._cache

    def get(self, sha256: str) -> LocalFeatures:
        with self._lock:
            found = self._cache.get(sha256)
            if found is not None:
                self._cache.move_to_end(sha256)
                return found
        features = self._compute(sha256)
        self._put(sha256, features)
        return features

    def warm(self, shas: Iterable[str]) -> int:
        """Compute the features of the first ``shas`` (as many as the cache holds)
        that are not cached yet; returns how many were computed."""
        todo = [s for s in list(dict.fromkeys(shas))[: self._entries] if s not in self]
        for sha in todo:
            self._put(sha, self._compute(sha))
        return len(todo)

    def _compute(self, sha256: str) -> LocalFeatures:
        try:
            return local_features(self._load(sha256), studio=True)
        except (OSError, ValueError):
            return LocalFeatures.empty()

    def _put(self, sha256: str, features: LocalFeatures) -> None:
        with self._lock:
            self._cache[sha256] = features
            self._cache.move_to_end(sha256)
            while len(self._cache) > self._entries:
                self._cache.popitem(last=False)


def facts() -> dict[str, Any]:
    """What a snapshot's ``facts["pipeline"]["rerank"]`` records (the parameters)."""
    return {
        "features": "rootsift",
        "geometry": "homography-usac-fast",
        "top": RERANK_TOP,
        "min_inliers": MIN_INLIERS,
        "inlier_weight": INLIER_WEIGHT,
        "max_inliers": MAX_INLIERS,
        "max_side": MAX_SIDE,
        "max_keypoints": MAX_KEYPOINTS,
    }


class QueryPhoto:
    """A shopper's decoded photo for re-ranking, its local features computed ahead.

    ``pending``: the features being computed on another thread (started by
    ``LiveIndex.query_photo`` as soon as the photo is decoded, so they overlap
    the photo's embedding: on the 2-core box that hid most of the query SIFT
    at concurrency 1); without it they are computed on first use.
    """

    def __init__(self, image: Image.Image, pending: Future[LocalFeatures] | None = None) -> None:
        self.image = image
        self._pending = pending

    @property
    def ahead(self) -> bool:
        """Whether the features were started ahead (or already computed)."""
        return self._pending is not None

    def features(self) -> LocalFeatures:
        if self._pending is None:
            self._pending = Future()
            self._pending.set_result(local_features(self.image))
        return self._pending.result()


def rerank_hits(
    hits: list[Hit],
    query: Image.Image | QueryPhoto,
    features_of: Callable[[Hit], LocalFeatures],
) -> list[Hit]:
    """``hits`` (best first) with the first :data:`RERANK_TOP` re-scored and re-sorted.

    Each hit's score becomes its fused score (:func:`fused_scores`), so the
    answer stays sorted by score; hits past the short list keep theirs and
    their place, below it (their cosine is at most the list's lowest).
    """
    head, tail = hits[:RERANK_TOP], hits[RERANK_TOP:]
    if len(head) < 2:
        return hits
    photo = query if isinstance(query, QueryPhoto) else QueryPhoto(query)
    q = photo.features()
    counts = inlier_counts(q, [features_of(h) for h in head])
    scores = fused_scores([h.score for h in head], counts)
    order = sorted(range(len(head)), key=lambda i: -scores[i])
    return [replace(head[i], score=scores[i]) for i in order] + tail
