"""One place that turns every failure into ``{"error": {"code", "message"}}``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from shoplens.errors import ShoplensError
from shoplens.service.middleware import current_request_id

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad_parameter",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_content",
    429: "rate_limited",
    503: "not_ready",
}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    error: dict[str, str] = {"code": code, "message": message}
    rid = current_request_id()
    if rid is not None:
        error["request_id"] = rid
    return JSONResponse({"error": error}, status_code=status, headers=headers)


def _validation_message(errors: list[dict[str, Any]]) -> str:
    """Name the parameter and say what is wrong, e.g. ``k: must be <= 100 (got '500')``."""
    parts = []
    for err in errors[:3]:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("query", "body", "path", "header")]
        name = ".".join(loc) or "request"
        msg = str(err.get("msg", "invalid value"))
        if err.get("type") == "missing":
            parts.append(f"{name}: required parameter is missing")
            continue
        got = err.get("input")
        shown = f" (got {got!r})" if isinstance(got, str | int | float) else ""
        parts.append(f"{name}: {msg[:1].lower()}{msg[1:]}{shown}")
    return "; ".join(parts) or "invalid request"


async def _shoplens_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ShoplensError)
    headers = {"Retry-After": "1"} if exc.status in (429, 503) else None
    if exc.status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    return error_response(exc.status, exc.code, exc.message, headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(400, "bad_parameter", _validation_message(list(exc.errors())))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    cause = exc.__cause__
    if isinstance(cause, ShoplensError):
        return await _shoplens_error(request, cause)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    if exc.status_code == 404:
        message = f"no such endpoint: {request.method} {request.url.path}"
    elif exc.status_code == 413:
        message = "the request body is larger than the server accepts"
    elif exc.status_code == 400 and isinstance(exc.detail, str):
        message = f"the request could not be read: {exc.detail}"
    else:
        message = str(exc.detail)
    return error_response(exc.status_code, code, message, getattr(exc, "headers", None))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "an unexpected error happened on the server")


def install(app: FastAPI) -> None:
    app.add_exception_handler(ShoplensError, _shoplens_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
