"""Products: read, more-like-this, and admin create/replace/delete."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Path, Request, Response, UploadFile
from starlette.concurrency import run_in_threadpool

from shoplens.ar_assets.service import ArService
from shoplens.errors import BadParameter, InvalidContent, NotFound
from shoplens.ids import PRODUCT_ID_PATTERN, PRODUCT_ID_RE
from shoplens.indexer.catalog.types import ImageRecord, ProductRecord
from shoplens.indexer.serving.writer import CatalogWriter
from shoplens.indexer.sources.manifest import RowError, product_from_mapping
from shoplens.service.deps import LiveDep, StateDep, get_ar, public_base_url, require_admin
from shoplens.service.params import SearchParamsDep
from shoplens.service.schemas import (
    ProductImage,
    ProductResponse,
    SearchResponse,
    error_responses,
)
from shoplens.service.search import respond, to_results
from shoplens.service.state import ServiceState
from shoplens.service.uploads import read_limited

router = APIRouter(tags=["products"])

# The pattern is documented, not enforced on reads: an id of another shape is
# simply unknown (404); PUT refuses it with 400.
ProductId = Annotated[
    str,
    Path(
        description="stable product id, 1-128 chars of A-Za-z0-9._:-",
        max_length=128,
        json_schema_extra={"pattern": PRODUCT_ID_PATTERN},
    ),
]
MAX_IMAGES = 20


def parse_meta(product_id: str, text: str) -> ProductRecord:
    """``meta`` JSON -> a product, validated by the manifest's own row rules."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadParameter(f"meta: not valid JSON ({exc.msg} at position {exc.pos})") from None
    except RecursionError:  # [[[[...]]]]: a 400, never a 500
        raise BadParameter("meta: not valid JSON (nested too deeply)") from None
    if not isinstance(raw, dict):
        raise BadParameter("meta: must be a JSON object of manifest columns")
    given = raw.get("product_id")
    if given is not None and str(given).strip() != product_id:
        raise BadParameter(f"meta.product_id {given!r} differs from the URL's {product_id!r}")
    row = {k: v for k, v in raw.items() if str(k).strip().lower() != "image"}
    row["product_id"] = product_id
    try:
        return product_from_mapping(row)
    except RowError as exc:
        raise InvalidContent(f"meta: {exc}", code="invalid_product") from None


def product_body(
    state: ServiceState,
    request: Request,
    product: ProductRecord,
    images: list[ImageRecord],
    version: str,
) -> ProductResponse:
    base = public_base_url(request)
    ar = state.ar_blocks(base, [product.product_id])
    return ProductResponse(
        product_id=product.product_id,
        title=product.title,
        category=product.category,
        description=product.description,
        url=product.url,
        price=product.price,
        currency=product.currency,
        in_stock=product.in_stock,
        attributes=dict(product.attributes),
        images=[
            ProductImage(image_id=i.image_id, image_url=state.image_url(base, i.image_id))
            for i in images
        ],
        ar=ar.get(product.product_id),
        index_version=version,
    )


@router.get(
    "/v1/products/{product_id}/similar",
    response_model=SearchResponse,
    summary="More like this: products nearest to this product's photos",
    responses=error_responses(400, 404, 503),
    # Like the photo search: no `regions` field (it is only for `regions=auto`).
    response_model_exclude_unset=True,
)
async def similar_products(
    product_id: ProductId, request: Request, state: StateDep, live: LiveDep, params: SearchParamsDep
) -> SearchResponse:
    started = time.perf_counter()

    def work() -> tuple[list[Any], str, str]:
        t0 = time.perf_counter()
        version = live.version
        hits = live.similar(product_id, params.k, params.filters)
        state.metrics.search_seconds.labels("similar").observe(time.perf_counter() - t0)
        results = to_results(state, request, hits)
        # A click on a "more like this" answer is feedback too (no photo to learn from).
        return results, version, state.record_search([r.product_id for r in results])

    return await respond(work, live, started)


@router.get(
    "/v1/products/{product_id}",
    response_model=ProductResponse,
    summary="A product with its photos and AR block",
    responses=error_responses(404, 503),
)
async def get_product(
    product_id: ProductId, request: Request, state: StateDep, live: LiveDep
) -> ProductResponse:
    def work() -> ProductResponse:
        version = live.version
        product, images = live.product(product_id)
        return product_body(state, request, product, images, version)

    return await run_in_threadpool(work)


@router.put(
    "/v1/products/{product_id}",
    response_model=ProductResponse,
    summary="Create or replace a product (admin); searchable when the call returns",
    responses={
        201: {"model": ProductResponse, "description": "Created"},
        **error_responses(400, 401, 403, 409, 413, 415, 422, 503),
    },
    dependencies=[Depends(require_admin)],
)
async def put_product(
    product_id: ProductId,
    request: Request,
    response: Response,
    state: StateDep,
    live: LiveDep,
    meta: Annotated[
        str,
        Form(description='JSON object of manifest columns, e.g. {"title": "...", "price": 9.5}'),
    ],
    image: Annotated[list[UploadFile], File(description="one or more product photos")],
) -> ProductResponse:
    if not PRODUCT_ID_RE.match(product_id):
        raise BadParameter(f"product_id must be 1-128 chars of A-Za-z0-9._:- (got {product_id!r})")
    record = parse_meta(product_id, meta)
    if not image:
        raise BadParameter("image: send at least one product photo")
    if len(image) > MAX_IMAGES:
        raise BadParameter(f"image: at most {MAX_IMAGES} photos per product")
    photos = [await read_limited(f, state.settings.max_image_bytes) for f in image]

    def work() -> tuple[ProductResponse, bool]:
        try:
            live.product(product_id)
            created = False
        except NotFound:
            created = True
        CatalogWriter(live).upsert_product(record, photos, state.embedder)
        product, images = live.product(product_id)
        return product_body(state, request, product, images, live.version), created

    body, created = await run_in_threadpool(work)
    response.status_code = 201 if created else 200
    return body


@router.delete(
    "/v1/products/{product_id}",
    status_code=204,
    summary="Remove a product (admin); gone from results at once",
    responses=error_responses(401, 403, 404, 503),
    dependencies=[Depends(require_admin)],
)
async def delete_product(
    product_id: ProductId, live: LiveDep, ar: Annotated[ArService, Depends(get_ar)]
) -> Response:
    await run_in_threadpool(CatalogWriter(live).delete_product, product_id)
    # Its 3D models go with it: kept, they would be stored but reachable from no answer.
    await run_in_threadpool(ar.forget_product, product_id)
    return Response(status_code=204)
