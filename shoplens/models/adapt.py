"""Catalog adaptation: a linear projection learnt from the catalog's own product ids.

At snapshot build time the indexer fits one :class:`Adaptation` on every
catalog image vector and its product id, applies it to the catalog vectors
before building the vector index, stores it in the snapshot, and applies it
to every query vector at search time. Queries are never used to fit it.

The method (``"lda"``) is supervised whitening: whiten the *within-product*
covariance (shrunk towards a scaled identity so it stays well conditioned),
then rotate onto the principal axes of the product means in that whitened
space and keep the leading ``dim`` of them (by default ``n_products - 1``,
classic LDA). Directions along which photos of
one product vary (lighting, background, viewpoint) are damped; directions that
separate products are kept. It is closed form (two symmetric eigendecomposi-
tions, numpy only) and takes about a second for a few thousand 1584-d vectors
(7 s at 3168-d). A catalog with fewer photos than dimensions is solved in
the span of its photos, which is exact and costs what the catalog's size
does: milliseconds for ten photos, a second or so for a thousand.
Applying it is one matrix product, microseconds per query.

Defaults (shrinkage 0.3, ``n_products - 1`` output dimensions) were picked on a
split of the grocery catalog, never on queries; on the grocery val queries they
lift product-level Recall@1 of Lite0 avg-pooled features from 0.56 to 0.76
(see ``benchmarks/results/quality.md``).

When the catalog cannot teach anything (fewer than two products, or fewer
than ``min_images_per_product`` images per product on average, e.g. one studio
photo per product) :func:`fit_adaptation` returns ``None`` and callers keep
the plain features.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from shoplens.errors import ShoplensError
from shoplens.files.atomic import sha256_file
from shoplens.models.base import FloatArray, l2_normalise

METHODS = ("lda",)
DEFAULT_METHOD = "lda"
_FORMAT = 1
_JSON = "adaptation.json"
_MEAN = "adaptation_mean.npy"
_MATRIX = "adaptation_matrix.npy"


class AdaptationError(ShoplensError):
    """A stored adaptation is missing, corrupt, or does not fit the vectors given."""


def head_only(dim_in: int, head: int) -> Adaptation:
    """Keep the first ``head`` dims (renormalised): the fallback for multi-layer
    descriptors when there is nothing to learn from. Their earlier-stage parts only
    pay once a projection is learnt; on one studio photo per product they hurt
    (grocery demo catalog R@1 0.22 with all 1584 dims vs 0.38 with the head)."""
    if not 0 < head <= dim_in:
        raise AdaptationError(f"head of {head} dims does not fit vectors of {dim_in}")
    matrix = np.zeros((dim_in, head), dtype=np.float32)
    matrix[np.arange(head), np.arange(head)] = 1.0
    return Adaptation(
        kind="head",
        params={"head_dims": head},
        mean=np.zeros(dim_in, dtype=np.float32),
        matrix=matrix,
        facts={"kind": "head", "head_dims": head},
    )


@dataclass
class Adaptation:
    """``apply(x) = l2n((l2n(x) - mean) @ matrix)``; the same for catalog and queries."""

    kind: str
    params: dict[str, Any]
    mean: FloatArray  # (d,)
    matrix: FloatArray  # (d, d_out)
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def dim_in(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def dim_out(self) -> int:
        return int(self.matrix.shape[1])

    def apply(self, vectors: NDArray[np.floating[Any]]) -> FloatArray:
        """``(n, dim_in)`` vectors -> ``(n, dim_out)`` L2-normalised float32."""
        x = np.asarray(vectors, dtype=np.float32)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.dim_in:
            raise AdaptationError(
                f"adaptation expects vectors of dimension {self.dim_in}, got shape {x.shape}"
            )
        return l2_normalise((l2_normalise(x) - self.mean) @ self.matrix)

    def save(self, directory: Path) -> dict[str, str]:
        """Write three files into ``directory``; returns ``{file name: sha256}``."""
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / _MEAN, self.mean.astype(np.float32))
        np.save(directory / _MATRIX, self.matrix.astype(np.float32))
        meta = {
            "format": _FORMAT,
            "kind": self.kind,
            "params": self.params,
            "facts": self.facts,
            "dim_in": self.dim_in,
            "dim_out": self.dim_out,
        }
        (directory / _JSON).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        return {name: sha256_file(directory / name) for name in (_JSON, _MEAN, _MATRIX)}

    @classmethod
    def load(cls, directory: Path) -> Adaptation:
        try:
            meta = json.loads((directory / _JSON).read_text())
            mean = np.load(directory / _MEAN, allow_pickle=False).astype(np.float32)
            matrix = np.load(directory / _MATRIX, allow_pickle=False).astype(np.float32)
        except (OSError, ValueError) as exc:
            raise AdaptationError(f"cannot read the adaptation in {directory}: {exc}") from exc
        if meta.get("format") != _FORMAT or meta.get("kind") not in (*METHODS, "head"):
            raise AdaptationError(
                f"{directory / _JSON}: unsupported adaptation "
                f"(format {meta.get('format')!r}, kind {meta.get('kind')!r})"
            )
        if matrix.ndim != 2 or mean.shape != (matrix.shape[0],):
            raise AdaptationError(
                f"{directory}: mean {mean.shape} and matrix {matrix.shape} do not fit"
            )
        return cls(
            kind=str(meta["kind"]),
            params=dict(meta.get("params", {})),
            mean=mean,
            matrix=matrix,
            facts=dict(meta.get("facts", {})),
        )


def _inv_sqrt(cov: NDArray[np.float64], beta: float) -> NDArray[np.float64]:
    """``cov^(-beta/2)`` of a symmetric positive-definite matrix."""
    vals, vecs = np.linalg.eigh(cov)
    vals = np.maximum(vals, vals.max() * 1e-9)
    return (vecs * vals ** (-beta / 2.0)) @ vecs.T  # type: ignore[no-any-return]


def _fit_lda(
    x: NDArray[np.float64],
    labels: NDArray[np.int_],
    n_classes: int,
    *,
    shrinkage: float,
    beta: float,
    dim: int | None,
) -> tuple[NDArray[np.float64], NDArray[np.float64]] | None:
    """``(mean, matrix)``; None when the photos do not differ at all."""
    n, d = x.shape
    keep = d if dim is None else max(1, min(int(dim), d))
    mean = x.mean(axis=0)
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    class_means = np.zeros((n_classes, d))
    np.add.at(class_means, labels, x)
    class_means /= counts[:, None]
    within = x - class_means[labels]
    centred_means = class_means - mean
    # The shrinkage target: the within-product variance per dimension.
    tau = float(np.einsum("ij,ij->", within, within)) / n / d
    if n < d:
        # Fewer photos than dimensions (a small catalog, or the 3168-d ensemble
        # on a few thousand photos): every within-product deviation and every
        # product mean lies in the span of the centred photos. Outside that span
        # the shrunk covariance is tau * I and the means have no component, so
        # solving inside it is exact at O(d n^2) instead of O(d^3) (a ten-photo
        # catalog: 30 s -> milliseconds).
        basis = _span(x - mean)  # (d, r) orthonormal columns, r <= n - 1
        if basis.shape[1] == 0:
            return None  # every photo the same vector: nothing tells products apart
        # Axes outside the span carry no catalog vector: the full solution can
        # only fill them with arbitrary directions of its zero-eigenvalue space,
        # which add a component to a query that no catalog vector shares. Asking
        # for more axes than the span has therefore keeps all of the span:
        # catalog geometry and every query's ranking equal the full d x d
        # solution's with all its axes kept.
        keep = min(keep, basis.shape[1])
        return mean, basis @ _lda_axes(
            within @ basis, centred_means @ basis, tau, shrinkage, beta, keep
        )
    return mean, _lda_axes(within, centred_means, tau, shrinkage, beta, keep)


def _span(centred: NDArray[np.float64]) -> NDArray[np.float64]:
    """An orthonormal basis ``(d, r)`` of the rows' span, ``r`` their numerical rank.

    Centred photos have rank at most ``n - 1``: QR alone would pad the basis
    with a direction made of rounding noise, so the rank is read from the SVD
    of the small triangular factor (an SVD of the wide matrix itself is many
    times slower than QR in LAPACK).
    """
    q, r = np.linalg.qr(centred.T)  # (d, n), (n, n)
    u, s, _ = np.linalg.svd(r)
    if not len(s) or s[0] == 0.0:
        return np.zeros((centred.shape[1], 0))
    rank = int(np.sum(s > s[0] * max(centred.shape) * np.finfo(np.float64).eps))
    return q @ u[:, :rank]  # type: ignore[no-any-return]


def _lda_axes(
    within: NDArray[np.float64],
    centred_means: NDArray[np.float64],
    tau: float,
    shrinkage: float,
    beta: float,
    keep: int,
) -> NDArray[np.float64]:
    """``(r, keep)`` LDA axes in the coordinates ``within`` and the means are given in."""
    n, r = within.shape
    sw = within.T @ within / n
    sw = (1.0 - shrinkage) * sw + shrinkage * tau * np.eye(r)
    whiten = _inv_sqrt(sw, beta)
    # Principal axes of the (equally weighted) product means, in whitened space.
    centred = centred_means @ whiten
    sb = centred.T @ centred / len(centred_means)
    vals, vecs = np.linalg.eigh(sb)
    order = np.argsort(vals)[::-1]
    return whiten @ vecs[:, order[:keep]]  # type: ignore[no-any-return]


def fit_adaptation(
    vectors: NDArray[np.floating[Any]],
    product_ids: Sequence[str],
    *,
    method: str = DEFAULT_METHOD,
    min_images_per_product: float = 2.0,
    shrinkage: float = 0.3,
    beta: float = 1.0,
    dim: int | str | None = "auto",
) -> Adaptation | None:
    """Fit a projection on catalog vectors and their product ids.

    ``vectors``: ``(n, d)`` image vectors (normalised here again), one per catalog
    image, ``product_ids`` aligned with them. ``shrinkage`` in [0, 1] blends the
    within-product covariance with a scaled identity; ``beta`` is the whitening
    power (1 = full whitening); ``dim`` keeps that many output dimensions
    (``None`` = all ``d``; ``"auto"`` = ``max(n_products - 1, 32)``), at most
    as many as the centred photos span when there are fewer photos than
    dimensions. Returns ``None`` when the catalog is too thin to
    learn from: fewer than two products, fewer than
    ``min_images_per_product`` images per product on average, or photos whose
    vectors are all the same.
    """
    if method not in METHODS:
        raise AdaptationError(f"unknown adaptation method {method!r}; known: {METHODS}")
    if not 0.0 <= shrinkage <= 1.0:
        raise AdaptationError(f"shrinkage must lie in [0, 1], got {shrinkage}")
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] != len(product_ids):
        raise AdaptationError(
            f"vectors {x.shape} and {len(product_ids)} product ids do not line up"
        )
    names = sorted(set(product_ids))
    n, d = x.shape
    if len(names) < 2 or n < min_images_per_product * len(names):
        return None
    index = {p: i for i, p in enumerate(names)}
    labels = np.fromiter((index[p] for p in product_ids), dtype=np.int64, count=n)
    if dim == "auto":
        dim = max(len(names) - 1, 32)
    elif dim is not None and not isinstance(dim, int):
        raise AdaptationError(f"dim must be an int, 'auto' or None, got {dim!r}")
    t0 = time.perf_counter()
    fitted = _fit_lda(
        l2_normalise(x).astype(np.float64),
        labels,
        len(names),
        shrinkage=shrinkage,
        beta=beta,
        dim=dim,
    )
    if fitted is None:
        return None
    mean, matrix = fitted
    seconds = time.perf_counter() - t0
    params: dict[str, Any] = {"shrinkage": shrinkage, "beta": beta, "dim": int(matrix.shape[1])}
    facts = {
        "kind": method,
        "params": params,
        "training_seconds": round(seconds, 4),
        "n_images": n,
        "n_products": len(names),
        "dim_in": d,
        "dim_out": int(matrix.shape[1]),
    }
    return Adaptation(
        kind=method,
        params=params,
        mean=mean.astype(np.float32),
        matrix=matrix.astype(np.float32),
        facts=facts,
    )
