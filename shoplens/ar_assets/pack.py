"""Packing a multi-file glTF into one GLB in pure Python (used when glTF-Transform is absent).

Only called on an asset that passed every check, so all URIs are known to be
data: URIs or files inside ``base``.
"""

from __future__ import annotations

import base64
import copy
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from shoplens.ar_assets.gltf import Gltf, as_int

MIME = {
    b"\x89PNG": "image/png",
    b"\xff\xd8\xff": "image/jpeg",
    b"RIFF": "image/webp",
    b"\xabKTX": "image/ktx2",
}


class PackError(Exception):
    pass


def _uri_bytes(uri: str, base: Path) -> bytes:
    if uri.startswith("data:"):
        return base64.b64decode(uri.partition(",")[2])
    return (base / unquote(uri)).read_bytes()


def _mime(data: bytes) -> str:
    for magic, mime in MIME.items():
        if data.startswith(magic):
            return mime
    raise PackError("unknown image format")


def pack(g: Gltf, base: Path) -> tuple[dict[str, Any], bytes]:
    """(JSON, BIN) of a self-contained version of ``g`` (buffers loaded by validate)."""
    doc = copy.deepcopy(g.doc)
    blob = bytearray()
    offsets: list[int] = []
    for data in g.buffers:
        if data is None:
            raise PackError("a buffer has no bytes (meshopt fallback buffers need glTF-Transform)")
        blob += b"\x00" * (-len(blob) % 8)
        offsets.append(len(blob))
        blob += data
    views = doc.get("bufferViews", [])
    for view in views:
        bi = as_int(view.get("buffer"))
        view["byteOffset"] = offsets[bi] + as_int(view.get("byteOffset"), 0)
        view["buffer"] = 0
    for img in doc.get("images", []):
        if "uri" not in img:
            continue
        data = _uri_bytes(str(img.pop("uri")), base)
        blob += b"\x00" * (-len(blob) % 8)
        views.append({"buffer": 0, "byteOffset": len(blob), "byteLength": len(data)})
        blob += data
        img["bufferView"] = len(views) - 1
        img.setdefault("mimeType", _mime(data))
    doc["bufferViews"] = views
    blob += b"\x00" * (-len(blob) % 4)
    doc["buffers"] = [{"byteLength": len(blob)}]
    return doc, bytes(blob)


def write_glb(doc: dict[str, Any], blob: bytes, out: Path) -> None:
    import json
    import struct

    js = json.dumps(doc, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 4)
    body = struct.pack("<II", len(js), 0x4E4F534A) + js
    body += struct.pack("<II", len(blob), 0x004E4942) + blob
    out.write_bytes(struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body)
