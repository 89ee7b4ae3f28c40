"""The demo home page (``GET /``), its one-tap sample photos and its photo previews.

The preview route lives in :mod:`shoplens.service.preview` and is included here, with
the page it was made for, so the app factory registers one router for the demo.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse

from shoplens import demo
from shoplens.errors import NotFound
from shoplens.service import preview
from shoplens.service.schemas import DemoSample, error_responses

TEMPLATES = Path(__file__).resolve().parent / "templates"

router = APIRouter(tags=["demo"])
router.include_router(preview.router)


@router.get("/", response_class=HTMLResponse, summary="The demo page: search with a photo")
async def home() -> HTMLResponse:
    page = (TEMPLATES / "index.html").read_text(encoding="utf-8")
    return HTMLResponse(page, headers={"Cache-Control": "no-cache"})


@router.get(
    "/demo/samples",
    response_model=list[DemoSample],
    summary="Bundled shopper photos for one-tap searches on the demo page",
)
async def list_samples(request: Request) -> list[DemoSample]:
    base = str(request.base_url).rstrip("/")
    return [
        DemoSample(
            name=s.file, product_id=s.product_id, title=s.title, url=f"{base}/demo/samples/{s.file}"
        )
        for s in demo.samples()
    ]


@router.get(
    "/demo/samples/{name}",
    response_class=FileResponse,
    summary="One bundled shopper photo (JPEG)",
    responses={200: {"content": {"image/jpeg": {}}}, **error_responses(404)},
)
async def sample_photo(name: Annotated[str, PathParam(max_length=200)]) -> FileResponse:
    known = {s.file: s for s in demo.samples()}
    if name not in known:  # only listed files: the name never reaches the filesystem
        raise NotFound(f"no sample photo named {name!r}")
    return FileResponse(
        known[name].path, media_type="image/jpeg", headers={"Cache-Control": "public, max-age=3600"}
    )
