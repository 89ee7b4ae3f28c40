"""Search by photo (``POST /v1/search``) and by text (``GET /v1/search?q=``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, File, Query, Request, UploadFile
from starlette.concurrency import run_in_threadpool

from shoplens.errors import BadParameter
from shoplens.indexer.catalog.types import Hit
from shoplens.indexer.serving.live import LiveIndex
from shoplens.models.base import FloatArray
from shoplens.models.decode import Crop, decode_image, parse_crop
from shoplens.service.deps import StateDep, public_base_url
from shoplens.service.params import SearchParams, SearchParamsDep
from shoplens.service.schemas import SearchResponse, SearchResultItem, error_responses
from shoplens.service.state import ServiceState
from shoplens.service.uploads import read_limited

router = APIRouter(tags=["search"])

# Four comma-separated fields. Documented, not enforced here: parse_crop checks
# the numbers and their ranges with a message that says what is wrong, and the
# pattern must accept everything it does (Python's float() reads more spellings
# than a JSON Schema pattern can say).
CROP_PATTERN = r"^[^,]+(,[^,]+){3}$"


def result_item(hit: Hit, image_url: str, ar: dict[str, Any] | None) -> SearchResultItem:
    """One hit in the public result shape."""
    return SearchResultItem(
        product_id=hit.product.product_id,
        score=round(float(hit.score), 6),
        title=hit.product.title,
        category=hit.product.category,
        price=hit.product.price,
        currency=hit.product.currency,
        in_stock=hit.product.in_stock,
        image_url=image_url,
        ar=ar,
    )


def to_results(state: ServiceState, request: Request, hits: list[Hit]) -> list[SearchResultItem]:
    """Hits -> the public result shape (blocking: asks the AR part for blocks)."""
    base = public_base_url(request)
    ar = state.ar_blocks(base, [h.product.product_id for h in hits])
    return [
        result_item(h, state.image_url(base, h.image_id), ar.get(h.product.product_id))
        for h in hits
    ]


def embed_photo(state: ServiceState, data: bytes, crop: Crop | None) -> FloatArray:
    """Untrusted bytes -> one query vector (blocking: decode, preprocess, inference)."""
    embedder = state.embedder
    started = time.perf_counter()
    # Decode JPEGs at a reduced scale when the photo is much bigger than the
    # network input: a 12 MP phone photo decodes ~4x faster at 1/2 or 1/4.
    image = decode_image(
        data,
        max_pixels=state.settings.max_image_pixels,
        crop=crop,
        draft_size=embedder.preprocess_config.resize,
    )
    batch = embedder.prepare(image)[np.newaxis]
    vector: FloatArray = embedder.embed_prepared(batch)[0]
    state.metrics.embed_seconds.labels("image").observe(time.perf_counter() - started)
    return vector


def run_search(
    state: ServiceState,
    request: Request,
    live: LiveIndex,
    vector: FloatArray,
    params: SearchParams,
    kind: str,
) -> tuple[list[SearchResultItem], str]:
    started = time.perf_counter()
    version = live.version  # before searching: a swap mid-request reports the older one
    hits = live.search(vector, params.k, params.filters)
    state.metrics.search_seconds.labels(kind).observe(time.perf_counter() - started)
    return to_results(state, request, hits), version


async def respond(
    work: Callable[[], tuple[list[SearchResultItem], str]], live: LiveIndex, started: float
) -> SearchResponse:
    """Run a search off the event loop and wrap it in the contract's answer."""
    results, version = await run_in_threadpool(work)
    return SearchResponse(
        results=results,
        took_ms=round((time.perf_counter() - started) * 1000, 2),
        model=live.model_name,
        index_version=version,
    )


@router.post(
    "/v1/search",
    response_model=SearchResponse,
    summary="Search the catalog with a photo",
    responses=error_responses(400, 413, 415, 422, 429, 503),
)
async def search_by_photo(
    request: Request,
    state: StateDep,
    params: SearchParamsDep,
    image: Annotated[
        UploadFile, File(description="the shopper's photo: JPEG, PNG, WebP, GIF, HEIC/HEIF, AVIF")
    ],
    crop: Annotated[
        str | None,
        Query(
            description="region to search for, 'x,y,w,h' as fractions 0-1 of the photo "
            "(left, top, width, height; x+w and y+h at most 1)",
            examples=["0.25,0.1,0.5,0.6"],
            json_schema_extra={"pattern": CROP_PATTERN},
        ),
    ] = None,
) -> SearchResponse:
    started = time.perf_counter()
    live = state.index.require()
    region = parse_crop(crop) if crop else None
    data = await read_limited(image, state.settings.max_image_bytes)

    def work() -> tuple[list[SearchResultItem], str]:
        vector = embed_photo(state, data, region)
        return run_search(state, request, live, vector, params, "image")

    return await respond(work, live, started)


@router.get(
    "/v1/search",
    response_model=SearchResponse,
    summary="Search the catalog with words (OpenCLIP models only)",
    responses=error_responses(400, 429, 503),
)
async def search_by_text(
    request: Request,
    state: StateDep,
    params: SearchParamsDep,
    q: Annotated[
        str | None, Query(max_length=500, description="what to look for, e.g. 'red apple'")
    ] = None,
) -> SearchResponse:
    started = time.perf_counter()
    text = (q or "").strip()
    if not text:
        raise BadParameter("q: required: GET /v1/search?q=TEXT, or POST a photo to search by image")
    encoder = state.text_embedder
    if encoder is None:
        raise BadParameter(
            f"text search is unavailable: the configured model {state.embedder.name!r} embeds "
            "images only; configure an OpenCLIP model (SHOPLENS_MODEL=open_clip:<arch>) "
            "to search by words",
            code="text_search_unavailable",
        )
    live = state.index.require()

    def work() -> tuple[list[SearchResultItem], str]:
        t0 = time.perf_counter()
        vector = encoder.embed_text([text])[0]
        state.metrics.embed_seconds.labels("text").observe(time.perf_counter() - t0)
        return run_search(state, request, live, vector, params, "text")

    return await respond(work, live, started)
