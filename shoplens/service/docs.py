"""The interactive API docs (``GET /docs``, Swagger UI), served from Shoplens itself.

FastAPI's own page loads Swagger UI from a CDN, which leaves ``/docs`` blank
offline and on closed networks. The files come from npm's ``swagger-ui-dist``
(Apache-2.0, licence and notices beside them; ``scripts/vendor_swagger_ui.sh``
refreshes them) and are served under ``/static/swagger/`` with the version in
the links, so a browser may cache them and an upgrade still reaches it. ReDoc
is turned off (``/redoc`` would need another CDN bundle and its web fonts).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response

SWAGGER_DIR = Path(__file__).resolve().parent / "static" / "swagger"
ASSETS_PATH = "/static/swagger"
# Links carry ?v=<version>: a day of caching, and a new version is a new URL.
_ASSET_CACHE = "public, max-age=86400"
SWAGGER_UI_PARAMETERS: dict[str, Any] = {
    # Swagger UI would otherwise send the spec's URL to validator.swagger.io for a badge.
    "validatorUrl": None,
    "displayRequestDuration": True,
}

router = APIRouter(include_in_schema=False)


class _SwaggerAssets(StaticFiles):
    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = _ASSET_CACHE
        return response


def swagger_version() -> str:
    return (SWAGGER_DIR / "VERSION.txt").read_text(encoding="utf-8").strip()


@router.get("/docs", response_class=HTMLResponse)
async def swagger_ui(request: Request) -> HTMLResponse:
    # Behind a proxy that strips a prefix, links must keep it (as FastAPI's own page does).
    root = str(request.scope.get("root_path", "")).rstrip("/")
    version = swagger_version()

    def asset(name: str) -> str:
        return f"{root}{ASSETS_PATH}/{name}?v={version}"

    page = get_swagger_ui_html(
        openapi_url=root + str(request.app.openapi_url),
        title=f"{request.app.title} API",
        swagger_js_url=asset("swagger-ui-bundle.js"),
        swagger_css_url=asset("swagger-ui.css"),
        swagger_favicon_url=asset("favicon-32x32.png"),
        swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
    )
    page.headers["Cache-Control"] = "no-cache"
    return page


def install(app: FastAPI) -> None:
    """``/docs`` and its assets. Call before mounting ``/static`` (the longer prefix first)."""
    app.include_router(router)
    app.mount(ASSETS_PATH, _SwaggerAssets(directory=SWAGGER_DIR), name="swagger")
