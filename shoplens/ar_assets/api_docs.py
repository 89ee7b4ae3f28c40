"""What the OpenAPI description says of the AR routes (``routes.py``): parameter
rules, statuses and the headers the file route reads.

Error answers are only described here; the service's OpenAPI module gives them
its error schema (this part may not import the service). Patterns are
documented, not enforced: a name of another shape is simply unknown (404), and
an upload's id or variant is checked by the AR service (400).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path

from shoplens.ids import PRODUCT_ID_PATTERN

Responses = dict[int | str, dict[str, Any]]

ProductIdParam = Annotated[
    str,
    Path(
        description="product id, 1-128 chars of A-Za-z0-9._:-",
        json_schema_extra={"pattern": PRODUCT_ID_PATTERN},
    ),
]
VARIANT_DOC = {"pattern": r"^[A-Za-z0-9._:-]{1,64}$"}
VARIANT = "variant name, 1-64 chars of A-Za-z0-9._:-; without it the default model"
FILE_NAME_DOC = {"pattern": r"^[0-9a-f]{64}\.(glb|usdz|zip)$"}

PUT_RESPONSES: Responses = {
    201: {"description": "Stored: the AR block plus the validation report (`report`)"},
    404: {"description": "Unknown product: nothing is stored"},
    413: {"description": "The model is larger than SHOPLENS_MAX_ASSET_BYTES"},
    415: {
        "description": "Not a .glb, a self-contained .gltf, nor a .zip holding a .gltf or one .glb"
    },
    422: {
        "description": "Invalid model: the error plus `report`, the validation report "
        "of what is wrong; nothing is stored or replaced"
    },
    503: {"description": "The catalog is not loaded yet"},
}
NO_MODEL: Responses = {404: {"description": "Unknown product, or it has no 3D model (variant)"}}

_FILE_TYPES: dict[str, dict[str, Any]] = {
    t: {} for t in ("model/gltf-binary", "model/vnd.usdz+zip", "application/zip")
}
FILE_RESPONSES: Responses = {
    200: {"description": "The file", "content": _FILE_TYPES},
    206: {"description": "The requested byte range", "content": _FILE_TYPES},
    304: {"description": "Not modified (If-None-Match matched the ETag)"},
    404: {"description": "No such file"},
    416: {"description": "Range not satisfiable (Content-Range: bytes */size)"},
}
FILE_HEADERS = [
    {"name": "Range", "in": "header", "required": False, "schema": {"type": "string"},
     "description": "one byte range, e.g. bytes=0-1023 (206)"},
    {"name": "If-Range", "in": "header", "required": False, "schema": {"type": "string"},
     "description": "the ETag the Range is for; another one gets the whole file"},
    {"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"},
     "description": "an ETag of an earlier answer: 304 when it still matches"},
]  # fmt: skip

STATIC_RESPONSES: Responses = {
    200: {"description": "The script", "content": {"text/javascript": {}}},
    404: {"description": "No such file"},
}
