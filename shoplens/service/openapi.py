"""The OpenAPI description, adjusted to what the service really answers.

Route decorators document what is particular to a route (404 for an unknown
id, 415 for an upload of the wrong kind, ...). What the middleware and the
shared dependencies make many routes answer is added here, derived from the
same code, so the description cannot drift from the behaviour:

- FastAPI documents a 422 ``HTTPValidationError`` on routes with parameters;
  the handlers answer those cases with 400 and the contract's ``ErrorBody``.
- 400 on every operation: a malformed value, or an unknown query parameter
  or form field (``unknown_parameter``).
- 429 on every path the rate limit applies to (``ratelimit.EXEMPT_*``).
- 413 on every operation with a request body (``limits.BodyLimitMiddleware``).
- 401 and 403 on every operation that declares the admin bearer scheme (FastAPI
  declares it for every route depending on ``deps.require_admin``).
- Every error status documented without a body gets ``ErrorBody``: the AR
  routes (which may not import the service's schemas) document only descriptions.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from shoplens.service.ratelimit import EXEMPT_PATHS, EXEMPT_PREFIXES
from shoplens.service.schemas import ERROR_DESCRIPTIONS

_ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def _error(status: int) -> dict[str, Any]:
    return {
        "description": ERROR_DESCRIPTIONS[status],
        "content": {"application/json": {"schema": _ERROR_REF}},
    }


def _rate_limited(path: str) -> bool:
    return path not in EXEMPT_PATHS and not path.startswith(EXEMPT_PREFIXES)


def _fix(schema: dict[str, Any]) -> dict[str, Any]:
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            if method not in _METHODS:
                continue
            responses: dict[str, Any] = operation.setdefault("responses", {})
            auto = responses.get("422")
            if auto is not None and "HTTPValidationError" in json.dumps(auto):
                del responses["422"]
            added = [400]
            if _rate_limited(path):
                added.append(429)
            if "requestBody" in operation:
                added.append(413)
            if operation.get("security"):
                added += [401, 403]
            for code in added:
                responses.setdefault(str(code), _error(code))
            for key, response in responses.items():
                if key.isdigit() and int(key) in ERROR_DESCRIPTIONS and "content" not in response:
                    response["content"] = {"application/json": {"schema": _ERROR_REF}}
            operation["responses"] = dict(sorted(responses.items()))
    schemas = schema.get("components", {}).get("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    return schema


def install(app: FastAPI) -> None:
    original: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _fix(original())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
