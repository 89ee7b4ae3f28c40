"""``POST /v1/preview``: a shopper's photo as a JPEG any browser can show.

Browsers other than Safari cannot show HEIC/HEIF, the format iPhones save, so
the demo page would show a broken image while the search itself works. This
route decodes the photo exactly as search does (:func:`decode_image`: format
from the bytes, the same byte and pixel limits, EXIF orientation applied) and
answers a downscaled JPEG. Because the orientation is applied the same way, a
region drawn on the preview is in the frame ``crop`` is read in.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Query, Response, UploadFile
from starlette.concurrency import run_in_threadpool

from shoplens.models.decode import decode_image, encode_jpeg
from shoplens.service.deps import StateDep
from shoplens.service.schemas import error_responses
from shoplens.service.uploads import read_limited

# No tags of its own: it is included by the demo router (service/home.py) and gets its tag.
router = APIRouter()

MIN_SIDE = 64
MAX_SIDE = 2048
DEFAULT_SIDE = 1024


def render_preview(data: bytes, max_pixels: int, side: int) -> bytes:
    """Untrusted bytes -> a JPEG whose longer side is at most ``side`` (blocking)."""
    # draft_size keeps a JPEG's short side >= side: a 12 MP photo decodes at 1/2 or 1/4.
    image = decode_image(data, max_pixels=max_pixels, draft_size=side)
    return encode_jpeg(image, max_side=side, quality=82)


@router.post(
    "/v1/preview",
    response_class=Response,
    summary="A shopper's photo as a JPEG browsers can show (HEIC converted, EXIF applied)",
    description=(
        "Takes the same multipart field `image` as `POST /v1/search`, with the same "
        "limits, and answers it as a JPEG in the orientation search uses, so a region "
        "drawn on it is the `crop` to send. Nothing is stored."
    ),
    responses={
        200: {"content": {"image/jpeg": {}}, "description": "the photo as a JPEG"},
        **error_responses(400, 413, 415, 422, 429),
    },
)
async def preview(
    state: StateDep,
    image: Annotated[
        UploadFile, File(description="the shopper's photo: JPEG, PNG, WebP, GIF, HEIC/HEIF, AVIF")
    ],
    w: Annotated[
        int,
        Query(
            ge=MIN_SIDE,
            le=MAX_SIDE,
            description=f"longest side of the answer in pixels ({MIN_SIDE}-{MAX_SIDE}); "
            "smaller photos keep their size",
        ),
    ] = DEFAULT_SIDE,
) -> Response:
    settings = state.settings
    data = await read_limited(image, settings.max_image_bytes)
    jpeg = await run_in_threadpool(render_preview, data, settings.max_image_pixels, w)
    # The shopper's own photo: never kept by a cache on the way.
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})
