"""``POST /v1/search?regions=auto``: the regions of a shopper's photo in the public shape.

The finding is ``shoplens.indexer.serving.look``; this module decodes the
upload for it (full resolution: a vase in a room photo is a few dozen
pixels), maps boxes found inside a ``crop`` back to the whole photo, and
turns each region's hits into the usual result items.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from shoplens.indexer.catalog.types import Hit
from shoplens.indexer.serving.live import LiveIndex
from shoplens.indexer.serving.look.boxes import Box
from shoplens.indexer.serving.look.finder import find_regions
from shoplens.models.decode import Crop, decode_image
from shoplens.service.params import SearchParams
from shoplens.service.schemas import RegionBox, SearchRegion, SearchResultItem
from shoplens.service.state import ServiceState

#: The values ``regions`` takes (one today; the parameter leaves room for more).
REGION_MODES = ("auto",)


def photo_regions(
    state: ServiceState,
    live: LiveIndex,
    data: bytes,
    crop: Crop | None,
    params: SearchParams,
    to_results: Callable[[list[Hit]], list[SearchResultItem]],
) -> list[SearchRegion]:
    """Blocking: decode, find the regions, and shape each region's hits with ``to_results``
    (the route's own: image URLs, AR blocks)."""
    started = time.perf_counter()
    image = decode_image(data, max_pixels=state.settings.max_image_pixels, crop=crop)
    regions = find_regions(image, state.embedder, live, params.k, params.filters)
    state.metrics.embed_seconds.labels("regions").observe(time.perf_counter() - started)
    outer = Box(crop.x, crop.y, crop.w, crop.h) if crop is not None else None
    out = []
    for region in regions:
        box = region.box.within(outer) if outer is not None else region.box
        box = box.rounded()
        out.append(
            SearchRegion(
                box=RegionBox(x=box.x, y=box.y, w=min(box.w, 1 - box.x), h=min(box.h, 1 - box.y)),
                score=round(region.score, 6),
                label=region.label,
                results=to_results(region.hits),
            )
        )
    return out
