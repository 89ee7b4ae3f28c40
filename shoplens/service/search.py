"""Search by photo (``POST /v1/search``, refined by words with ``q``) and by text
(``GET /v1/search?q=``: words matched against the catalog's text, or with an
OpenCLIP model the text embedded into the photos' space)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, File, Query, Request, UploadFile
from starlette.concurrency import run_in_threadpool

from shoplens.errors import BadParameter
from shoplens.indexer.catalog.types import Hit
from shoplens.indexer.serving.live import LiveIndex
from shoplens.indexer.serving.rerank import QueryPhoto
from shoplens.models.base import FloatArray
from shoplens.models.decode import Crop, decode_image, parse_crop
from shoplens.service.deps import StateDep, public_base_url
from shoplens.service.look import photo_regions
from shoplens.service.params import SearchParams, SearchParamsDep
from shoplens.service.schemas import (
    SearchRegion,
    SearchResponse,
    SearchResultItem,
    error_responses,
)
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


def embed_photo(
    state: ServiceState, live: LiveIndex, data: bytes, crop: Crop | None
) -> tuple[FloatArray, QueryPhoto]:
    """Untrusted bytes -> one query vector and the decoded photo (blocking: decode,
    preprocess, inference); the photo is what a studio catalog re-ranks with, its
    local features computed by ``live`` while the photo is embedded."""
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
    photo = live.query_photo(image)
    batch = embedder.prepare(image)[np.newaxis]
    vector: FloatArray = embedder.embed_prepared(batch)[0]
    state.metrics.embed_seconds.labels("image").observe(time.perf_counter() - started)
    return vector, photo


# What a search's work gives back: the results, the index version, the search_id.
Answer = tuple[list[SearchResultItem], str, str]


def run_search(
    state: ServiceState,
    request: Request,
    live: LiveIndex,
    vector: FloatArray,
    params: SearchParams,
    kind: str,
    text: str | None = None,
    image: QueryPhoto | None = None,
    photo: tuple[bytes, Crop | None] | None = None,
) -> Answer:
    """``image``: the decoded photo, for a studio snapshot's geometric re-ranking;
    ``photo``: the upload and its crop, which the feedback book may hold (only
    with learning from shoppers on) for a confirmation to keep."""
    started = time.perf_counter()
    version = live.version  # before searching: a swap mid-request reports the older one
    # A shopper's photo search joins the shop's query mean (studio snapshots).
    hits = live.search(vector, params.k, params.filters, text, image, observe=image is not None)
    state.metrics.search_seconds.labels(kind).observe(time.perf_counter() - started)
    results = to_results(state, request, hits)
    data, crop = photo if photo is not None else (None, None)
    search_id = state.record_search(
        [r.product_id for r in results], vector=vector, photo=data, crop=crop
    )
    return results, version, search_id


def run_word_search(
    state: ServiceState, request: Request, live: LiveIndex, text: str, params: SearchParams
) -> Answer:
    started = time.perf_counter()
    version = live.version
    hits = live.search_words(text, params.k, params.filters)
    state.metrics.search_seconds.labels("words").observe(time.perf_counter() - started)
    results = to_results(state, request, hits)
    return results, version, state.record_search([r.product_id for r in results])


async def respond(work: Callable[[], Answer], live: LiveIndex, started: float) -> SearchResponse:
    """Run a search off the event loop and wrap it in the contract's answer."""
    results, version, search_id = await run_in_threadpool(work)
    return SearchResponse(
        search_id=search_id,
        results=results,
        took_ms=round((time.perf_counter() - started) * 1000, 2),
        model=live.model_name,
        index_version=version,
    )


@router.post(
    "/v1/search",
    response_model=SearchResponse,
    summary="Search the catalog with a photo (optionally refined by words)",
    description=(
        "Filters are query parameters; the only form field is `image`. With `q`, the "
        "photo search is refined by words: it ranks, by the photo, only the products "
        "whose text matches every word of `q` (or, when none of those passes the "
        "filters, some word); `score` stays the photo's cosine similarity.\n\n"
        "With `regions=auto` the answer also has `regions`: the separate products "
        "found in the photo (a room, a shelf, an outfit), best first, each a `box` "
        "(fractions 0-1 of the photo as the shopper sees it, EXIF orientation "
        "applied; with `crop`, still of the whole photo), a `score`, a `label` (the "
        "best match's category, or null) and its own `results` with the same `k` "
        "and filters (`q` refines `results` only). Without the parameter there is no "
        "`regions` field."
    ),
    responses=error_responses(400, 413, 415, 422, 429, 503),
    # `regions` is left out of the answer, not null, when it was not asked for.
    response_model_exclude_unset=True,
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
    q: Annotated[
        str | None,
        Query(
            max_length=500,
            description="refine with words: only products whose title, category, attributes "
            "or description match every word (else, when none does, some word), ranked by "
            "the photo",
            examples=["red"],
        ),
    ] = None,
    regions: Annotated[
        Literal["auto"] | None,
        Query(
            description="'auto': also find the separate products in the photo and answer "
            "`regions`, each with its own results (about a second more)",
            examples=["auto"],
        ),
    ] = None,
) -> SearchResponse:
    started = time.perf_counter()
    live = state.index.require()
    region = parse_crop(crop) if crop else None
    text = (q or "").strip() or None
    data = await read_limited(image, state.settings.max_image_bytes)
    found: list[SearchRegion] = []

    def work() -> Answer:
        vector, decoded = embed_photo(state, live, data, region)
        answer = run_search(
            state, request, live, vector, params, "image", text, decoded, (data, region)
        )
        if regions is not None:
            shape = lambda hits: to_results(state, request, hits)  # noqa: E731
            found.extend(photo_regions(state, live, data, region, params, shape))
        return answer

    response = await respond(work, live, started)
    if regions is not None:
        response.regions = found
    return response


_WORDS_DESCRIPTION = """\
Without a text-capable model (the default), the words of `q` are matched against
each product's title, category, attribute values and description: any case,
accents ignored (`creme` finds "Crème"), each word also as the start of a longer
one (`ban` finds "Bananas"), English plurals folded. Products matching every word
come first, then those matching some; within each group the better text match
(a title beats a category, attribute or description match) ranks higher. The
result's `score` is then a relevance in (0, 1]: above 0.5 when every word
matched, comparable within one answer only; `image_url` is the product's first
photo. The same filters as photo search apply (`min_score=0.5`: every word).

With an OpenCLIP model (`SHOPLENS_MODEL=open_clip:...`) the text is embedded
instead and `score` is the cosine similarity to the best-matching photo.
"""


@router.get(
    "/v1/search",
    response_model=SearchResponse,
    summary="Search the catalog with words",
    description=_WORDS_DESCRIPTION,
    responses=error_responses(400, 429, 503),
    # Like the photo search: no `regions` field (it is only for `regions=auto`).
    response_model_exclude_unset=True,
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
    live = state.index.require()
    encoder = state.text_embedder
    if encoder is None:
        return await respond(
            lambda: run_word_search(state, request, live, text, params), live, started
        )

    def work() -> Answer:
        t0 = time.perf_counter()
        vector = encoder.embed_text([text])[0]
        state.metrics.embed_seconds.labels("text").observe(time.perf_counter() - t0)
        return run_search(state, request, live, vector, params, "text")

    return await respond(work, live, started)
