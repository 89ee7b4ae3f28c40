"""``find_regions``: the products in one photo, each region with its own result list.

One decode, one batch: every proposal is cut from the same decoded photo,
prepared with the model's own preprocessing and embedded in batches by the
same ``ImageEmbedder`` whole-photo search uses. Each crop is searched with the
request's filters, less a share of what all the photo's crops have in common
(``LookConfig.centre``: catalog photos close to any room scene stop winning
every crop); a region is kept where its best match is confident for this photo
and distinct (non-maximum suppression across boxes, one region per product).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from shoplens.indexer.catalog.types import Hit, SearchFilters
from shoplens.indexer.serving.live import LiveIndex
from shoplens.indexer.serving.look.boxes import Box, suppress
from shoplens.indexer.serving.look.proposals import ProposalConfig, propose
from shoplens.indexer.serving.look.scoring import region_scores
from shoplens.models.base import FloatArray, ImageEmbedder


@dataclass(frozen=True)
class LookConfig:
    """Budget and thresholds of :func:`find_regions` (tuned on half of a room set)."""

    proposals: ProposalConfig = field(default_factory=ProposalConfig)
    max_proposals: int = 100  # the embedding batch dominates the time: this is the budget
    batch: int = 32  # crops per inference call (bounded memory, near-peak throughput)
    probe_k: int = 10  # hits per proposal read to score it
    # A room shows 13 products on average; past 16 regions the tuning rooms gained nothing.
    max_regions: int = 16
    nms_iou: float = 0.3
    # Hubness correction: each crop is searched minus this share of the photo's mean
    # crop direction (LiveIndex.search_batch). On the tuning rooms 0.3 lifted
    # recall@20 0.181 -> 0.205 (paired bootstrap 90 % interval +0.011..+0.038) and
    # hit@10 0.816 -> 0.878; 0.2 and 0.5 did less; 0 turns it off.
    centre: float = 0.3
    margin_weight: float = 2.0  # see scoring.region_scores
    share_weight: float = 0.5
    # Regions scoring under this are dropped (scoring.region_scores; -inf keeps all).
    min_score: float = float("-inf")


@dataclass(frozen=True)
class Region:
    box: Box  # fractions of the searched photo, as shown
    score: float  # how sure the region holds its best match (comparable within one photo)
    label: str | None  # the best match's category, when the catalog has one
    hits: list[Hit]


def square_crop(image: Image.Image, box: Box) -> Image.Image:
    """The box grown to a square around its centre, shifted to stay inside the photo.

    Catalog photos show a product whole and centred on a square; the model's
    centre crop would cut the long side of a tall or wide box, and squashing it
    would distort the product. The extra context comes from the photo itself.
    """
    width, height = image.size
    left, top, right, bottom = box.pixels(width, height)
    side = min(max(right - left, bottom - top), width, height)
    cx, cy = (left + right) / 2, (top + bottom) / 2
    x0 = round(min(max(0.0, cx - side / 2), width - side))
    y0 = round(min(max(0.0, cy - side / 2), height - side))
    return image.crop((x0, y0, x0 + side, y0 + side))


def embed_boxes(
    image: Image.Image, boxes: Sequence[Box], embedder: ImageEmbedder, batch: int
) -> FloatArray:
    """``(len(boxes), dim)`` vectors of the square crops, in batches."""
    parts = []
    for start in range(0, len(boxes), batch):
        chunk = [embedder.prepare(square_crop(image, b)) for b in boxes[start : start + batch]]
        parts.append(embedder.embed_prepared(np.stack(chunk)))
    if not parts:
        return np.zeros((0, embedder.dim), np.float32)
    return np.concatenate(parts).astype(np.float32, copy=False)


def find_regions(
    image: Image.Image,
    embedder: ImageEmbedder,
    live: LiveIndex,
    k: int,
    filters: SearchFilters,
    cfg: LookConfig | None = None,
) -> list[Region]:
    """The regions of ``image`` (already decoded, orientation applied), best first.

    Each region's ``hits`` are the top ``k`` products for its crop that pass
    ``filters``; a region with none is dropped, so a filter also decides which
    products in the photo are worth a region.
    """
    cfg = cfg or LookConfig()
    boxes = propose(image, cfg.proposals)[: cfg.max_proposals]
    if not boxes:
        return []
    vectors = embed_boxes(image, boxes, embedder, cfg.batch)
    probe = max(k, cfg.probe_k)
    hits = live.search_batch(vectors, probe, filters, centre=cfg.centre)
    scores = region_scores(hits, cfg.probe_k, cfg.margin_weight, cfg.share_weight)
    order = suppress(boxes, scores, cfg.nms_iou)
    regions: list[Region] = []
    seen: set[str] = set()
    for i in order:
        if not hits[i] or scores[i] < cfg.min_score:
            continue
        top = hits[i][0].product.product_id
        if top in seen:  # two boxes on one product: the better one speaks for it
            continue
        seen.add(top)
        regions.append(Region(boxes[i], scores[i], hits[i][0].product.category, hits[i][:k]))
        if len(regions) == cfg.max_regions:
            break
    return regions
