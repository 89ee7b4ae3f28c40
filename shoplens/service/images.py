"""Catalog photos resized for phones: ``GET /v1/images/{image_id}?w=``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi import Path as PathParam
from starlette.concurrency import run_in_threadpool

from shoplens.files.disk_lru import MIB
from shoplens.indexer.catalog.photos import IMAGE_ID_HEX
from shoplens.service.deps import LiveDep, StateDep
from shoplens.service.renditions import DEFAULT_WIDTH, MAX_WIDTH, MIN_WIDTH, Renditions
from shoplens.service.schemas import error_responses

router = APIRouter(tags=["images"])

# Content-addressed: the bytes behind a URL never change.
_CACHE_HEADERS = {"Cache-Control": "public, max-age=31536000, immutable", "Vary": "Accept"}


def _wants_webp(accept: str) -> bool:
    """True when ``Accept`` lists image/webp with a non-zero quality."""
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        if media.lower() != "image/webp":
            continue
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    return float(value) > 0
                except ValueError:
                    return True
        return True
    return False


# Documented, not enforced: an id of another shape is simply unknown (404).
ImageId = Annotated[
    str,
    PathParam(
        description="content-addressed image id, as in a product's image_url",
        json_schema_extra={"pattern": f"^[0-9a-f]{{{IMAGE_ID_HEX}}}$"},
    ),
]
_IF_NONE_MATCH = {
    "name": "If-None-Match",
    "in": "header",
    "required": False,
    "description": "an ETag of an earlier answer: 304 when it still matches",
    "schema": {"type": "string"},
}


def _matches(if_none_match: str, etag: str) -> bool:
    tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return "*" in tags or etag in tags


@router.get(
    "/v1/images/{image_id}",
    summary="A catalog photo resized for phones (WebP or JPEG by Accept)",
    response_class=Response,
    responses={
        200: {
            "content": {"image/webp": {}, "image/jpeg": {}},
            "description": "The photo, at most w pixels wide (never upscaled)",
        },
        304: {"description": "Not modified (If-None-Match matched the ETag)"},
        **error_responses(400, 404, 503),
    },
    openapi_extra={"parameters": [_IF_NONE_MATCH]},
)
async def get_image(
    image_id: ImageId,
    request: Request,
    state: StateDep,
    live: LiveDep,
    w: Annotated[
        int,
        Query(ge=MIN_WIDTH, le=MAX_WIDTH, description=f"width in pixels ({MIN_WIDTH}-{MAX_WIDTH})"),
    ] = DEFAULT_WIDTH,
) -> Response:
    fmt = "webp" if _wants_webp(request.headers.get("accept", "")) else "jpeg"
    etag = Renditions.etag(image_id, w, fmt)
    if_none_match = request.headers.get("if-none-match")
    # 304 only for ids that exist: a stale tag for a deleted photo must not look valid.
    source = Path(await run_in_threadpool(live.image_path, image_id))
    headers = {**_CACHE_HEADERS, "ETag": etag}
    if if_none_match and _matches(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    rendition = await run_in_threadpool(
        state.renditions.get,
        image_id,
        source,
        w,
        fmt,
        max_bytes=state.settings.renditions_cache_max_mb * MIB,
    )
    return Response(rendition.data, media_type=rendition.media_type, headers=headers)
