"""The catalog adaptation policy of a snapshot: whether to fit one, on what, and the
fallback when there is nothing to learn from.

``shoplens.models.adapt`` knows how to fit and apply an adaptation; this
module decides, for one snapshot's catalog, which one the index is built with:

- ``method == "none"``: none;
- enough photos per product: a fit on the catalog's own product ids (sampled
  above :data:`ADAPT_FIT_MAX_IMAGES`), reused from the published snapshot
  when its inputs are byte-identical;
- too few (one studio photo per product): a multi-layer descriptor's head
  features alone (``head_dims`` from the embedder), which generalise better.

:func:`search_pipeline` then names the snapshot's search pipeline
(``facts["pipeline"]``): ``"learnt"`` when an adaptation was learnt from the
catalog, else ``"studio"``, where photo searches re-rank their short list by
geometric verification (:mod:`shoplens.indexer.serving.rerank`).

Plain inputs in, plain outputs out: the snapshot writer stores the result.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from shoplens.indexer.serving import rerank
from shoplens.models.adapt import Adaptation, AdaptationError, fit_adaptation, head_only
from shoplens.models.progress import step

ADAPT_DIR = "adapt"  # the adaptation's folder inside a snapshot
# The adaptation is fitted on at most this many images (a deterministic random
# sample above it): the fit holds a float64 copy of what it learns from.
ADAPT_FIT_MAX_IMAGES = 200_000
# Rows projected per step when adapting the catalog (bounds temporary copies).
_ADAPT_CHUNK = 65_536


@dataclass(frozen=True)
class PreviousFit:
    """The published snapshot's adaptation facts and its folder, to reuse a fit."""

    facts: dict[str, Any]
    folder: Path


def fit_for_catalog(
    method: str,
    vectors: NDArray[np.float32],
    product_ids: list[str],
    *,
    head_dims: int | None,
    previous: PreviousFit | None,
) -> tuple[Adaptation | None, dict[str, Any] | None, str | None]:
    """``(adaptation, facts for facts.json, reason it is off)`` for a snapshot's catalog.

    ``method`` is ``settings.adaptation``; ``head_dims`` the embedder's head part
    (``ImageEmbedder.head_dims``); ``previous`` the published snapshot's fit,
    reused when it was learnt from exactly these inputs.
    """
    adaptation, facts, reason = _fit_learnt(method, vectors, product_ids, previous)
    head = head_dims
    if adaptation is None and head is not None and method != "none":
        # Nothing to learn from: a multi-layer descriptor falls back to its head
        # features, which generalise better from a single studio photo.
        fallback = head_only(vectors.shape[1], head)
        return (
            fallback,
            {
                "kind": fallback.kind,
                "dir": ADAPT_DIR,
                "dim_in": fallback.dim_in,
                "dim_out": fallback.dim_out,
                "params": fallback.params,
                "fallback_because": reason,
            },
            None,
        )
    return adaptation, facts, reason


def search_pipeline(adapt_facts: dict[str, Any] | None) -> dict[str, Any]:
    """``facts["pipeline"]`` of a snapshot whose adaptation facts are ``adapt_facts``.

    A catalog the adaptation learnt from (several photos per product) is at
    R@1 0.86 on the grocery val queries with global features alone, and
    re-ranking would only add latency there. Without a learnt adaptation (a
    studio catalog, or the adaptation turned off) the global features are
    weakest, and verifying the short list with local features pays
    (``benchmarks/results/quality.md``, studio catalog).
    """
    if adapt_facts is not None and adapt_facts.get("kind") != "head":
        return {"kind": "learnt"}
    return {"kind": "studio", "rerank": rerank.facts()}


def _fit_learnt(
    method: str,
    vectors: NDArray[np.float32],
    product_ids: list[str],
    previous: PreviousFit | None,
) -> tuple[Adaptation | None, dict[str, Any] | None, str | None]:
    if method == "none":
        return None, None, "turned off (settings.adaptation = 'none', SHOPLENS_ADAPTATION)"
    n = len(product_ids)
    n_products = len(set(product_ids))
    x, pids = vectors, product_ids
    if n > ADAPT_FIT_MAX_IMAGES:
        rows = np.sort(np.random.default_rng(0).choice(n, size=ADAPT_FIT_MAX_IMAGES, replace=False))
        x, pids = vectors[rows], [product_ids[i] for i in rows]
    t0 = time.perf_counter()
    fingerprint = _fit_fingerprint(method, x, pids)
    adaptation = _previous_fit(previous, fingerprint)
    reused = adaptation is not None
    if adaptation is None:
        # Milliseconds for a small catalog; up to a minute or so past a few
        # thousand photos of a 3168-d model (two d x d eigendecompositions).
        with step(f"fitting the catalog adaptation ({method}) on {len(pids)} photos"):
            adaptation = fit_adaptation(x, pids, method=method)
    seconds = time.perf_counter() - t0
    if adaptation is None:
        return (
            None,
            None,
            f"too few photos per product to learn from ({n} images of {n_products} "
            "products; needs at least 2 products, 2 images per product on average, "
            "and photos that differ)",
        )
    facts = {
        "kind": adaptation.kind,
        "dir": ADAPT_DIR,
        "dim_in": adaptation.dim_in,
        "dim_out": adaptation.dim_out,
        "params": adaptation.params,
        "fit_seconds": round(seconds, 3),
        "n_images": int(adaptation.facts.get("n_images", len(pids))),
        "n_products": int(adaptation.facts.get("n_products", n_products)),
        "sampled": len(pids) < n,
        "fingerprint": fingerprint,
        "reused": reused,
    }
    return adaptation, facts, None


def _fit_fingerprint(method: str, vectors: NDArray[np.float32], product_ids: list[str]) -> str:
    """Hash of everything a fit learns from: the same inputs give the same adaptation."""
    h = hashlib.sha256(f"{method}\n{vectors.shape}\n".encode())
    h.update(np.ascontiguousarray(vectors, dtype=np.float32).tobytes())
    h.update("\n".join(product_ids).encode())
    return h.hexdigest()


def _previous_fit(previous: PreviousFit | None, fingerprint: str) -> Adaptation | None:
    """The published snapshot's adaptation when it was fitted on exactly these inputs.

    A re-run with nothing changed would otherwise spend most of its time
    refitting (two eigendecompositions of a d x d matrix) to the same result.
    """
    if previous is None or previous.facts.get("fingerprint") != fingerprint:
        return None
    try:
        return Adaptation.load(previous.folder / str(previous.facts.get("dir", ADAPT_DIR)))
    except (OSError, ValueError, AttributeError, AdaptationError):
        return None  # unreadable: fit again


def adapt_rows(adaptation: Adaptation, vectors: NDArray[np.float32]) -> NDArray[np.float32]:
    out = np.empty((vectors.shape[0], adaptation.dim_out), dtype=np.float32)
    for s in range(0, vectors.shape[0], _ADAPT_CHUNK):
        out[s : s + _ADAPT_CHUNK] = adaptation.apply(vectors[s : s + _ADAPT_CHUNK])
    return out
