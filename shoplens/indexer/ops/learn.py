"""``shoplens learn``: a new snapshot of the live catalog whose adaptation also learns
from shoppers' confirmed photos (``shoplens.indexer.feedback``).

The catalog is not re-read from a manifest: the snapshot is built from the
catalog rows as they are (the same vectors, the same vector ids), so it only
changes how photos are compared. The adaptation (LDA over product ids, see
``shoplens.models.adapt``) is fitted on the catalog's photos plus every
approved shopper photo of a live product that passes the learn-time outlier
check (:func:`shoplens.indexer.feedback.guards.outliers`). Shopper photos
teach the adaptation what the *same product* looks like across shelves, hands
and lighting, which one studio photo per product cannot. Each photo also brings three
crops of itself (:mod:`shoplens.indexer.feedback.views`) as learning samples.

They are not added as search entries: in a one-off measurement on the
grocery studio catalog (the same vectors as benchmarks/results/learn.md, 1, 3,
5 and 10 train photos per product), extra entries changed Recall@1 by under
0.01 once the adaptation had learnt from the same photos (0.709 vs 0.703 at 3,
0.723 vs 0.723 at 5), and each would add a vector to every search and an index
row that is not a catalog photo.

A running service swaps the published snapshot in like any other (its reload
loop, or at once through the admin job's ``on_success``). ``run_index`` uses
:func:`shopper_examples` too, so a re-index keeps what was learnt.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from shoplens.config import Settings
from shoplens.indexer.catalog.store import CatalogStore
from shoplens.indexer.feedback.book import feedback_target, has_feedback
from shoplens.indexer.feedback.guards import outliers
from shoplens.indexer.feedback.store import FeedbackStore
from shoplens.indexer.feedback.views import view_vectors
from shoplens.indexer.serving.snapshot import CatalogVectors, build_snapshot, read_facts
from shoplens.models.base import ImageEmbedder
from shoplens.models.progress import step

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShopperExamples:
    """Approved shopper photos to learn from, and what the outlier check left out."""

    photo_ids: list[str]
    product_ids: list[str]
    vectors: NDArray[np.float32]
    outliers: int
    unknown_product: int
    # More views of the same photos (feedback.views): learning samples only.
    view_vectors: NDArray[np.float32] | None = None
    view_products: tuple[str, ...] = ()

    def learn_also(self) -> tuple[NDArray[np.float32], Sequence[str]] | None:
        if not self.photo_ids:
            return None
        if self.view_vectors is None or not len(self.view_products):
            return self.vectors, self.product_ids
        return (
            np.concatenate([self.vectors, self.view_vectors]),
            [*self.product_ids, *self.view_products],
        )


def shopper_examples(
    settings: Settings, embedder: ImageEmbedder, catalog: CatalogVectors
) -> ShopperExamples:
    """The approved shopper photos of ``catalog``'s products, embedded by ``embedder``,
    without the outliers, with their crop views. Empty when there is no feedback database."""
    empty = ShopperExamples([], [], np.zeros((0, 0), np.float32), 0, 0)
    if not has_feedback(settings) or catalog.vectors is None:
        return empty
    store = FeedbackStore(feedback_target(settings))
    try:
        rows = store.learnable(embedder.name)
    finally:
        store.close()
    live = {im.product_id for im in catalog.images}
    usable = [r for r in rows if r[1] in live and r[2].shape[0] == catalog.vectors.shape[1]]
    if not usable:
        return ShopperExamples([], [], empty.vectors, 0, len(rows))
    vectors = np.stack([r[2] for r in usable]).astype(np.float32)
    products = [r[1] for r in usable]
    drop = outliers(vectors, products)
    keep = ~drop
    examples = ShopperExamples(
        photo_ids=[r[0] for r, k in zip(usable, keep, strict=True) if k],
        product_ids=[p for p, k in zip(products, keep, strict=True) if k],
        vectors=vectors[keep],
        outliers=int(drop.sum()),
        unknown_product=len(rows) - len(usable),
    )
    return _with_views(settings, embedder, examples)


def _with_views(
    settings: Settings, embedder: ImageEmbedder, examples: ShopperExamples
) -> ShopperExamples:
    """``examples`` plus the cached crop views of each photo (embedded on first use)."""
    if not examples.photo_ids:
        return examples
    with step(f"views of {len(examples.photo_ids)} shopper photos"):
        found = view_vectors(settings.data_dir, embedder, examples.photo_ids)
    rows = [(v, p) for v, p in zip(found, examples.product_ids, strict=True) if v is not None]
    if not rows:
        return examples
    return replace(
        examples,
        view_vectors=np.concatenate([v for v, _ in rows]).astype(np.float32),
        view_products=tuple(p for v, p in rows for _ in range(len(v))),
    )


def record_learnt(settings: Settings, examples: ShopperExamples, snapshot_id: str) -> None:
    """Mark the photos the published ``snapshot_id`` learnt from (and only those)."""
    if not has_feedback(settings):
        return
    feedback = FeedbackStore(feedback_target(settings))
    try:
        feedback.mark_learnt(examples.photo_ids, snapshot_id, time.time())
    finally:
        feedback.close()


@dataclass
class LearnReport:
    snapshot_id: str
    model: str
    catalog_images: int
    learnt: int  # shopper photos the adaptation learnt from
    outliers: int  # approved photos left out by the outlier check
    unknown_product: int  # approved photos of products no longer in the catalog
    products_with_photos: int
    adaptation: dict[str, Any] | None
    seconds: float

    def summary_line(self) -> str:
        return (
            f"learnt from {self.learnt} shopper photos of {self.products_with_photos} products "
            f"({self.outliers} outliers left out) in {self.seconds:.1f}s: "
            f"snapshot {self.snapshot_id}"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_learn(settings: Settings, *, embedder: ImageEmbedder | None = None) -> LearnReport:
    """Build and publish a snapshot of the live catalog that learns from shopper photos."""
    from shoplens.indexer.ops.build import run_lock

    t0 = time.perf_counter()
    if embedder is None:
        from shoplens.models.registry import load_embedder

        embedder = load_embedder(settings)
    with run_lock(settings), CatalogStore(settings.database(settings.db_path)) as store:
        catalog = CatalogVectors(*store.live_vectors(embedder.name))
        examples = shopper_examples(settings, embedder, catalog)
        with step(f"learning from {len(examples.photo_ids)} shopper photos"):
            snapshot_id = build_snapshot(
                settings,
                catalog,
                model=embedder.name,
                dim=embedder.dim,
                preprocess=embedder.preprocess_config.to_dict(),
                head_dims=embedder.head_dims,
                build_facts={
                    "learn": {
                        "shopper_photos": len(examples.photo_ids),
                        "outliers": examples.outliers,
                    }
                },
                learn_also=examples.learn_also(),
                store=store,
            )
    record_learnt(settings, examples, snapshot_id)
    facts = read_facts(settings.snapshots_dir / snapshot_id)
    report = LearnReport(
        snapshot_id=snapshot_id,
        model=embedder.name,
        catalog_images=len(catalog.images),
        learnt=len(examples.photo_ids),
        outliers=examples.outliers,
        unknown_product=examples.unknown_product,
        products_with_photos=len(set(examples.product_ids)),
        adaptation=facts.get("adaptation"),
        seconds=round(time.perf_counter() - t0, 3),
    )
    log.info("%s", report.summary_line())
    return report
