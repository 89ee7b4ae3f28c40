"""AR try-on in the phone's browser: ``GET /ar/try/{product_id}`` and the libraries it loads.

The page (``static/tryon/tryon.js``) tracks the body part of the product's
placement with one MediaPipe solution (face mesh for face and head, hands for
the wrist, pose for the feet: two solutions in one page clash, so a page loads
only the one it needs) and renders the product's mobile GLB over the camera
frame with three.js, placed by the fit of ``placement.py``.

Everything comes from our own origin. MediaPipe's solutions ship about 20 MB of
wasm and models each, too heavy to vendor into the package (model-viewer is 1 MB),
so ``GET /ar/lib/{name}`` serves an allow-list of files from the ``node_modules``
that the Node tools are found in (``tools.find_tools``: ``SHOPLENS_NODE_MODULES``
or a ``node_modules`` above the package or the working directory;
``scripts/install-node-tools.sh`` installs them with ``package.json``). Without
it the page says try-on is not installed (``status`` ``error``) and the rest of
the AR part works as before. Pose's heavy model is not served.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse

from shoplens.ar_assets import tools
from shoplens.ar_assets.api_docs import VARIANT, VARIANT_DOC, ProductIdParam, Responses
from shoplens.ar_assets.placement import WEARABLE, stored_fit
from shoplens.ar_assets.routes import ArRouteDeps, _product_info
from shoplens.ar_assets.service import ArService, Catalog, check_variant
from shoplens.errors import NotFound

JS = "text/javascript; charset=utf-8"
BIN = "application/octet-stream"

# The tracking solution each placement loads: (npm package, script, global class).
SOLUTIONS = {
    "face": ("@mediapipe/face_mesh", "face_mesh.js", "FaceMesh"),
    "head": ("@mediapipe/face_mesh", "face_mesh.js", "FaceMesh"),
    "wrist": ("@mediapipe/hands", "hands.js", "Hands"),
    "foot": ("@mediapipe/pose", "pose.js", "Pose"),
}


def _solution_files(package: str, stem: str, graph: str, models: tuple[str, ...]) -> list[str]:
    base = f"{stem}_solution"
    names = [
        f"{stem}.js",
        graph,
        f"{base}_packed_assets.data",
        f"{base}_packed_assets_loader.js",
        f"{base}_simd_wasm_bin.js",
        f"{base}_simd_wasm_bin.wasm",
        f"{base}_simd_wasm_bin.data",
        f"{base}_wasm_bin.js",
        f"{base}_wasm_bin.wasm",
        *models,
    ]
    return [f"{package}/{n}" for n in names]


LIB_FILES: tuple[str, ...] = (
    "three/build/three.module.min.js",
    "three/build/three.core.min.js",
    "three/examples/jsm/loaders/GLTFLoader.js",
    "three/examples/jsm/loaders/DRACOLoader.js",
    "three/examples/jsm/utils/BufferGeometryUtils.js",
    "three/examples/jsm/utils/SkeletonUtils.js",
    "three/examples/jsm/environments/RoomEnvironment.js",
    *_solution_files("@mediapipe/face_mesh", "face_mesh", "face_mesh.binarypb", ()),
    *_solution_files(
        "@mediapipe/hands",
        "hands",
        "hands.binarypb",
        ("hand_landmark_full.tflite",),  # modelComplexity 1
    ),
    *_solution_files(
        "@mediapipe/pose",
        "pose",
        "pose_web.binarypb",
        ("pose_landmark_full.tflite",),  # modelComplexity 1; not the 28 MB heavy one
    ),
)
MEDIA_TYPES = {".js": JS, ".wasm": "application/wasm"}
LIB_RESPONSES: Responses = {
    200: {"description": "The file", "content": {JS: {}, "application/wasm": {}, BIN: {}}},
    404: {"description": "Not a file the try-on page loads, or the Node packages are missing"},
}
PAGE_RESPONSES: Responses = {
    400: {"description": "Bad product id, variant name or mode"},
    404: {
        "description": "Unknown product, no 3D model (variant), or a floor, wall or table "
        "placement: nothing to wear"
    },
}


def lib_path(name: str) -> Path:
    """The file of an allow-listed library name; NotFound for anything else."""
    if name not in LIB_FILES:
        raise NotFound("not a file the try-on page loads")
    root = tools.find_tools().node_modules
    path = root / name if root is not None else None
    if path is None or not path.is_file():
        raise NotFound(
            f"{name} is not installed: run scripts/install-node-tools.sh (npm packages "
            "three and @mediapipe/*) or set SHOPLENS_NODE_MODULES"
        )
    return path


def libraries_installed(placement: str) -> bool:
    """Whether the page of ``placement`` can load three.js and its tracking solution."""
    root = tools.find_tools().node_modules
    if root is None or placement not in SOLUTIONS:
        return False
    package, script, _ = SOLUTIONS[placement]
    return (root / package / script).is_file() and (root / LIB_FILES[0]).is_file()


def page_config(
    ar: ArService, product_id: str, base: str, variant: str | None, mode: str
) -> dict[str, Any]:
    """What the page script needs: the model, its fit, the tracker, the variants."""
    block = ar.block(product_id, base, variant)
    name = check_variant(block.get("variant"))
    row = next((r for r in ar.rows(product_id) if r.variant == name), None)
    placement = str(block["placement"])
    fit = stored_fit(placement, row.report if row is not None else {})
    if fit is None:
        if placement in WEARABLE:
            raise NotFound(f"product {product_id!r}'s model has no known size to try on")
        raise NotFound(
            f"product {product_id!r} is placed on the {placement}: there is nothing to wear; "
            "its viewer_url shows it in your space"
        )
    package, script, cls = SOLUTIONS[placement]
    return {
        "product_id": product_id,
        "placement": placement,
        "mode": mode,
        "model_url": block["glb_mobile_url"],
        "dimensions_m": block["dimensions_m"],
        "fit": fit,
        "material_variants": [
            v["name"] for v in block["variants"] if v.get("source") == "KHR_materials_variants"
        ],
        "tracker": {
            "script": f"/ar/lib/{package}/{script}",
            "base": f"/ar/lib/{package}/",
            "class": cls,
            "installed": libraries_installed(placement),
        },
        "viewer_url": block["viewer_url"],
    }


def tryon_html(title: str, config: dict[str, Any], material_variant: str | None) -> str:
    """The page; its script reads ``config`` from a JSON block (no inline code to escape)."""
    config = {**config, "material_variant": material_variant, "title": title}
    # "</" inside a <script> block would end it: JSON-escape the slash.
    data = json.dumps(config).replace("</", "<\\/")
    t = escape(title)
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Try on {t}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/ar/static/tryon/tryon.css">
<script type="importmap">
{{"imports": {{"three": "/ar/lib/three/build/three.module.min.js",
  "three/addons/": "/ar/lib/three/examples/jsm/"}}}}
</script>
<script src="/ar/static/meshopt_decoder.js"></script>
<script type="application/json" id="tryon-config">{data}</script>
<script type="module" src="/ar/static/tryon/tryon.js"></script>
</head>
<body data-placement="{escape(config["placement"], quote=True)}">
<header>
  <a id="viewer" href="{escape(config["viewer_url"], quote=True)}">&larr; 3D view</a>
  <h1 id="title">{t}</h1>
  <label id="variant-picker" hidden>Variant <select id="variant"></select></label>
</header>
<main id="stage">
  <canvas id="frame"></canvas>
  <canvas id="render"></canvas>
  <video id="video" playsinline muted hidden></video>
</main>
<p id="message" role="status">Loading&hellip;</p>
<p id="limits" hidden>Shoes are placed from the ankle, heel and toe points of a body
  tracker: they follow the foot's direction and size, not its exact shape, and a leg
  in front of a foot does not hide the shoe.</p>
<nav id="controls">
  <button id="switch-camera" type="button" hidden>Switch camera</button>
  <label id="photo-pick" hidden>Use a photo <input id="photo" type="file" accept="image/*"></label>
  <button id="use-camera" type="button" hidden>Use the camera</button>
  <button id="shoot" type="button" disabled>Take a picture</button>
  <a id="saved" download="try-on.png" hidden>Save the picture</a>
</nav>
</body>
</html>
"""


def build_tryon_router(deps: ArRouteDeps) -> APIRouter:
    """``/ar/try/{product_id}`` and ``/ar/lib/{name}``, with the AR routes' dependencies."""
    router = APIRouter(tags=["ar"])

    @router.get(
        "/ar/try/{product_id}",
        response_class=HTMLResponse,
        summary="AR try-on page: the product on the shopper's face, wrist or feet",
        responses=PAGE_RESPONSES,
    )
    def try_on(
        request: Request,
        product_id: ProductIdParam,
        variant: str | None = Query(None, description=VARIANT, json_schema_extra=VARIANT_DOC),
        material_variant: str | None = Query(
            None, description="the glTF material variant to show first"
        ),
        mode: Literal["camera", "photo"] = Query(
            "camera", description="camera: the live camera; photo: a photo picker"
        ),
        ar: ArService = Depends(deps.ar),
        base: str = Depends(deps.base_url),
        catalog: Catalog | None = Depends(deps.catalog),
    ) -> HTMLResponse:
        config = page_config(ar, product_id, base, variant, mode)
        title, _shop = _product_info(catalog, product_id)
        return HTMLResponse(tryon_html(title, config, material_variant))

    @router.get(
        "/ar/lib/{name:path}",
        summary="three.js and MediaPipe files the try-on page loads, from our own origin",
        response_class=FileResponse,
        responses=LIB_RESPONSES,
    )
    def lib(
        name: str = PathParam(
            description="an allow-listed path inside node_modules",
            json_schema_extra={"enum": list(LIB_FILES)},
        ),
    ) -> FileResponse:
        path = lib_path(name)
        return FileResponse(
            path,
            media_type=MEDIA_TYPES.get(path.suffix, BIN),
            headers={"Cache-Control": "public, max-age=86400"},
        )

    return router


__all__ = ["LIB_FILES", "build_tryon_router"]
