"""The OpenAPI description, adjusted to what the service really answers.

FastAPI documents a 422 ``HTTPValidationError`` on every route with
parameters; this service answers those cases with 400 and the contract's
``ErrorBody``, so the description says that instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

_ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}


def _fix(schema: dict[str, Any]) -> dict[str, Any]:
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses: dict[str, Any] = operation.get("responses", {})
            auto = responses.get("422")
            if auto is not None and "HTTPValidationError" in json.dumps(auto):
                del responses["422"]
                responses.setdefault(
                    "400",
                    {
                        "description": "Bad parameter",
                        "content": {"application/json": {"schema": _ERROR_REF}},
                    },
                )
    components = schema.get("components", {}).get("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    return schema


def install(app: FastAPI) -> None:
    original: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _fix(original())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
