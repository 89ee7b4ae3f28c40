"""HTTP routes of the AR part: upload, AR block, stored files, viewer page, viewer script.

The AR part sits below the service: :func:`build_router` takes what the routes
need from the app (:class:`ArRouteDeps`, FastAPI dependencies) as arguments, and
the service fills them (:func:`shoplens.service.deps.ar_router`), so this module
never imports the service nor reads ``app.state``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

from shoplens.ar_assets.api_docs import (
    FILE_HEADERS,
    FILE_NAME_DOC,
    FILE_RESPONSES,
    NO_MODEL,
    PUT_RESPONSES,
    STATIC_RESPONSES,
    VARIANT,
    VARIANT_DOC,
    ProductIdParam,
)
from shoplens.ar_assets.service import (
    ArService,
    Catalog,
    in_catalog,
    require_product,
)
from shoplens.ar_assets.validation.commerce import PLACEMENTS
from shoplens.ar_assets.viewer import viewer_html
from shoplens.errors import InvalidAsset, NotFound, TooLarge

STATIC_DIR = Path(__file__).resolve().parent / "static"
JS = "text/javascript; charset=utf-8"
STATIC_FILES = {
    "model-viewer.min.js": JS,
    "meshopt_decoder.js": JS,
    "draco/draco_wasm_wrapper.js": JS,
    "draco/draco_decoder.wasm": "application/wasm",
    "basis/basis_transcoder.js": JS,
    "basis/basis_transcoder.wasm": "application/wasm",
    # The try-on page's own code (tryon.py).
    "tryon/tryon.js": JS,
    "tryon/tracking.js": JS,
    "tryon/tryon.css": "text/css; charset=utf-8",
}
IMMUTABLE = "public, max-age=31536000, immutable"
CHUNK = 1 << 16


@dataclass(frozen=True)
class ArRouteDeps:
    """FastAPI dependencies (callables taking the request) the AR routes need from their app."""

    ar: Callable[..., Awaitable[ArService]]
    # Absolute base of links in answers, without the trailing slash.
    base_url: Callable[..., Awaitable[str]]
    # Raises (401/403) unless the request is an admin's.
    require_admin: Callable[..., Awaitable[None]]
    # None while the app has no catalog loaded: the viewer then shows the product id,
    # and uploads are refused (503) since the product cannot be checked.
    catalog: Callable[..., Awaitable[Catalog | None]]


def _save_upload(file: UploadFile, dest: Path, limit: int) -> None:
    written = 0
    with open(dest, "wb") as out:
        while chunk := file.file.read(1 << 20):
            written += len(chunk)
            if written > limit:
                raise TooLarge(f"the model is larger than the limit of {limit} bytes")
            out.write(chunk)


def invalid_asset_response(exc: InvalidAsset) -> JSONResponse:
    """422 with the error envelope of the contract plus the validation report beside it."""
    return JSONResponse(
        status_code=exc.status,
        content={
            "error": {"code": exc.code, "message": exc.message},
            "report": exc.details.get("report", {}),
        },
    )


def _ingest(
    ar: ArService,
    base: str,
    product_id: str,
    file: UploadFile,
    placement: str,
    variant: str | None,
    catalog: Catalog | None,
) -> dict[str, Any] | JSONResponse:
    """Receive an upload into the store's tmp dir, then check, convert and store it."""
    # Before anything is written: an unknown product gets no temp file, row or asset.
    require_product(product_id, in_catalog(catalog, product_id))
    tmp_root = ar.settings.assets_dir / "tmp"
    tmp_root.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=tmp_root, prefix="recv-")
    os.close(fd)
    tmp = Path(name)
    try:
        _save_upload(file, tmp, ar.settings.max_asset_bytes)
        try:
            row, report = ar.ingest(
                product_id,
                tmp,
                original_name=file.filename or "",
                placement=placement,
                variant=variant,
            )
        except InvalidAsset as exc:
            return invalid_asset_response(exc)
    finally:
        tmp.unlink(missing_ok=True)
    block = ar.block(product_id, base, row.variant)
    return {**block, "report": report.to_dict()}


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(start, end inclusive) of a single bytes range; None = ignore the header."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, sep, last = spec.strip().partition("-")
    if not sep:
        return None
    try:
        if first == "":
            n = int(last)
            if n <= 0:
                return (size, size)  # unsatisfiable
            return (max(size - n, 0), size - 1)
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start >= size:
        return (size, size)  # unsatisfiable
    if start < 0 or end < start:
        return None
    return (start, min(end, size - 1))


def _read(f: BinaryIO, start: int, length: int) -> Iterator[bytes]:
    with f:
        f.seek(start)
        left = length
        while left > 0:
            chunk = f.read(min(CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk


def _file_response(request: Request, ar: ArService, name: str) -> Response:
    """A stored file with ETag, conditional GET and single byte ranges."""
    path, media_type, sha = ar.file_path(name)
    etag = f'"{sha}"'
    try:
        # Opened now: a garbage collection that unlinks the file later cannot cut the body.
        f = open(path, "rb")  # noqa: SIM115 - closed by _read or below
    except FileNotFoundError as exc:
        raise NotFound("no such AR file") from exc
    size = os.fstat(f.fileno()).st_size
    headers = {"ETag": etag, "Cache-Control": IMMUTABLE, "Accept-Ranges": "bytes"}
    inm = request.headers.get("if-none-match")
    tags = [t.strip().removeprefix("W/") for t in (inm or "").split(",")]
    if inm and (inm.strip() == "*" or etag in tags):
        f.close()
        return Response(status_code=304, headers=headers)
    start, length, status = 0, size, 200
    rng = request.headers.get("range")
    if_range = request.headers.get("if-range")
    if rng and (if_range is None or if_range.strip() == etag):
        parsed = _parse_range(rng, size)
        if parsed is not None:
            if parsed[0] >= size:
                f.close()
                return Response(
                    status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"}
                )
            start, length, status = parsed[0], parsed[1] - parsed[0] + 1, 206
            headers["Content-Range"] = f"bytes {parsed[0]}-{parsed[1]}/{size}"
    headers["Content-Length"] = str(length)
    if request.method == "HEAD":
        f.close()
        return Response(status_code=status, headers=headers, media_type=media_type)
    return StreamingResponse(
        _read(f, start, length), status_code=status, headers=headers, media_type=media_type
    )


def _viewer_page(
    request: Request,
    block: dict[str, Any],
    base: str,
    catalog: Catalog | None,
    product_id: str,
    material_variant: str | None,
) -> HTMLResponse:
    title, shop_url = _product_info(catalog, product_id)
    back = request.headers.get("referer") or "/"
    same_site = back.startswith(base + "/") or (back.startswith("/") and not back.startswith("//"))
    if not same_site:
        back = "/"
    if shop_url and shop_url.startswith(("https://", "http://")):
        back = shop_url  # the product's own page in the shop
    return HTMLResponse(viewer_html(title, block, back, material_variant))


def _product_info(catalog: Catalog | None, product_id: str) -> tuple[str, str | None]:
    """(title, shop url) from the catalog when one is loaded (read-only)."""
    if catalog is None:
        return product_id, None
    try:
        product, _images = catalog.product(product_id)
    except Exception:  # the catalog is optional here: any failure falls back to the id
        return product_id, None
    title = getattr(product, "title", None)
    url = getattr(product, "url", None)
    return (str(title) if title else product_id), (str(url) if url else None)


def _static(name: str) -> Response:
    path = STATIC_DIR / name
    if name not in STATIC_FILES or not path.is_file():
        raise NotFound("no such static file")
    return Response(
        path.read_bytes(),
        media_type=STATIC_FILES[name],
        headers={"Cache-Control": "public, max-age=86400"},
    )


def build_router(deps: ArRouteDeps) -> APIRouter:
    """The AR routes, taking what they need from the app through ``deps``."""
    router = APIRouter(tags=["ar"])
    admin = [Depends(deps.require_admin)]

    @router.put(
        "/v1/products/{product_id}/ar",
        status_code=201,
        dependencies=admin,
        summary="Attach a 3D model (.glb, .gltf or .zip) to a product",
        response_model=None,
        responses=PUT_RESPONSES,
    )
    def put_ar(
        product_id: ProductIdParam,
        file: UploadFile = File(
            ...,
            description=".glb, self-contained .gltf, or .zip (a .gltf and its files, or a .glb)",
        ),
        placement: str = Form(
            "floor",
            description="where the product goes in AR",
            json_schema_extra={"enum": list(PLACEMENTS)},
        ),
        variant: str | None = Form(None, description=VARIANT, json_schema_extra=VARIANT_DOC),
        ar: ArService = Depends(deps.ar),
        base: str = Depends(deps.base_url),
        catalog: Catalog | None = Depends(deps.catalog),
    ) -> dict[str, Any] | JSONResponse:
        return _ingest(ar, base, product_id, file, placement, variant, catalog)

    @router.get(
        "/v1/products/{product_id}/ar", summary="The product's AR block", responses=NO_MODEL
    )
    def get_ar_block(
        product_id: ProductIdParam,
        variant: str | None = Query(None, description=VARIANT, json_schema_extra=VARIANT_DOC),
        ar: ArService = Depends(deps.ar),
        base: str = Depends(deps.base_url),
    ) -> dict[str, Any]:
        return ar.block(product_id, base, variant)

    @router.delete(
        "/v1/products/{product_id}/ar",
        status_code=204,
        dependencies=admin,
        summary="Remove the product's 3D model (all variants, or one with ?variant=)",
        responses=NO_MODEL,
    )
    def delete_ar(
        product_id: ProductIdParam,
        variant: str | None = Query(None, description=VARIANT, json_schema_extra=VARIANT_DOC),
        ar: ArService = Depends(deps.ar),
    ) -> Response:
        ar.delete(product_id, variant)
        return Response(status_code=204)

    # Two routes, not one with methods=[GET, HEAD]: OpenAPI needs an operation id each.
    @router.get(
        "/ar/files/{name}",
        summary="A stored AR file (ETag, single byte ranges)",
        response_class=Response,
        responses=FILE_RESPONSES,
        openapi_extra={"parameters": FILE_HEADERS},
    )
    @router.head(
        "/ar/files/{name}",
        summary="A stored AR file's headers",
        response_class=Response,
        responses=FILE_RESPONSES,
        openapi_extra={"parameters": FILE_HEADERS},
    )
    def get_file(
        request: Request,
        name: str = PathParam(
            description="content-addressed file name from an AR block",
            json_schema_extra=FILE_NAME_DOC,
        ),
        ar: ArService = Depends(deps.ar),
    ) -> Response:
        return _file_response(request, ar, name)

    @router.get(
        "/ar/view/{product_id}",
        response_class=HTMLResponse,
        summary="3D/AR viewer page",
        responses=NO_MODEL,
    )
    def view(
        request: Request,
        product_id: ProductIdParam,
        variant: str | None = Query(None, description=VARIANT, json_schema_extra=VARIANT_DOC),
        material_variant: str | None = Query(
            None, description="the glTF material variant to show first"
        ),
        ar: ArService = Depends(deps.ar),
        base: str = Depends(deps.base_url),
        catalog: Catalog | None = Depends(deps.catalog),
    ) -> HTMLResponse:
        block = ar.block(product_id, base, variant)
        return _viewer_page(request, block, base, catalog, product_id, material_variant)

    @router.get(
        "/ar/static/{name}",
        summary="model-viewer and decoders, served from our own origin",
        response_class=Response,
        responses=STATIC_RESPONSES,
    )
    def static(
        name: str = PathParam(
            description="a script the viewer page loads",
            json_schema_extra={"enum": [n for n in STATIC_FILES if "/" not in n]},
        ),
    ) -> Response:
        return _static(name)

    @router.get("/ar/static/{group}/{name}", include_in_schema=False)
    def static_decoder(group: str, name: str) -> Response:
        return _static(f"{group}/{name}")

    return router


__all__ = ["ArRouteDeps", "Catalog", "build_router", "invalid_asset_response"]
