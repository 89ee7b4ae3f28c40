"""405 answers whose ``Allow`` lists every method the path supports.

Routing answers an unsupported method with the methods of the first route
whose path matched, but this service declares one route per method (``GET``
and ``PUT`` of ``/v1/products/{product_id}`` are two routes), so ``Allow``
named one method of several and generated clients and fuzzers took the others
for unsupported. The methods come from the OpenAPI description instead (the
paths FastAPI generated from the routes), so ``Allow`` and the documented
methods are the same list. Paths it does not describe (``/docs``, static
files) keep the router's own ``Allow``: one route serves each of them.
"""

from __future__ import annotations

import re

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from shoplens.service.handlers import error_response

_HTTP_METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options", "trace"})
_PARAM = re.compile(r"\{[^}]+\}")


def _template_matches(template: str, path: str) -> bool:
    # A path parameter is one segment, as the router's default convertor reads it.
    literal = [re.escape(part) for part in _PARAM.split(template)]
    return re.fullmatch("[^/]+".join(literal), path) is not None


def documented_methods(app: FastAPI, path: str) -> list[str]:
    """The methods the OpenAPI description lists for ``path`` (a concrete path), sorted."""
    methods: set[str] = set()
    for template, item in app.openapi().get("paths", {}).items():
        if _template_matches(template, path):
            methods |= {m.upper() for m in item if m in _HTTP_METHODS}
    return sorted(methods)


async def method_not_allowed(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    path = request.scope["path"]
    root = str(request.scope.get("root_path", ""))
    if root and path.startswith(root):
        path = path[len(root) :]
    headers = dict(exc.headers or {})
    allowed = documented_methods(request.app, path)
    if allowed:
        headers["Allow"] = ", ".join(allowed)
    listed = headers.get("Allow")
    return error_response(
        405,
        "method_not_allowed",
        f"{request.method} is not allowed on {request.url.path}"
        + (f"; this path allows {listed}" if listed else ""),
        headers,
    )


def install(app: FastAPI) -> None:
    # Keyed by status: Starlette looks these up before the HTTPException handler.
    app.add_exception_handler(405, method_not_allowed)
