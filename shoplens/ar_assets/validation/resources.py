"""The bytes an asset brings: its GLB BIN chunk, and buffer/image URIs resolved safely.

A URI may only name a file inside the upload (or be a base64 ``data:`` URI of
bounded size): anything else is reported as an error and never read.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote

from shoplens.ar_assets.gltf import Gltf, GltfFormatError, as_int, parse_json, split_glb
from shoplens.ar_assets.report import Report

DATA_URI_MAX_BYTES = 16 * 1024 * 1024


def resolve_uri(uri: Any, pointer: str, base: Path | None, report: Report) -> bytes | None:
    """Bytes behind a buffer/image URI; errors for anything outside the upload."""
    if not isinstance(uri, str) or not uri:
        report.error("URI_INVALID", "the uri is not a non-empty string", pointer)
        return None
    if uri.startswith("data:"):
        head, sep, payload = uri.partition(",")
        if not sep or ";base64" not in head:
            report.error("URI_DATA_INVALID", "only base64 data: URIs are supported", pointer)
            return None
        if len(payload) * 3 // 4 > DATA_URI_MAX_BYTES:
            report.error(
                "URI_DATA_TOO_LARGE",
                f"data: URI larger than {DATA_URI_MAX_BYTES} bytes; use a file",
                pointer,
            )
            return None
        try:
            return base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            report.error("URI_DATA_INVALID", "the data: URI is not valid base64", pointer)
            return None
    path = unquote(uri)
    scheme = path.split("/", 1)[0]
    if ":" in scheme:
        report.error(
            "URI_NOT_RELATIVE",
            f"uri {uri!r} is not a relative path inside the upload (external or scheme URIs "
            "such as http:, https: or file: are refused)",
            pointer,
        )
        return None
    parts = PurePosixPath(path).parts
    if path.startswith(("/", "\\")) or ".." in parts or "\\" in path:
        report.error(
            "URI_OUTSIDE_UPLOAD", f"uri {uri!r} points outside the uploaded files", pointer
        )
        return None
    if base is None:
        report.error(
            "URI_EXTERNAL_IN_GLB",
            f"a .glb must be self-contained but references {uri!r}; upload a .zip instead",
            pointer,
        )
        return None
    target = (base / path).resolve()
    if base.resolve() not in target.parents or not target.is_file():
        report.error("URI_MISSING", f"uri {uri!r} is not among the uploaded files", pointer)
        return None
    return target.read_bytes()


def load_asset(path: Path, report: Report) -> Gltf | None:
    """The parsed glTF with its buffers' bytes (None where a buffer has none)."""
    raw = path.read_bytes()
    try:
        if raw[:4] == b"glTF":
            json_chunk, bin_chunk = split_glb(raw)
            doc = parse_json(json_chunk)
            base: Path | None = None
        else:
            bin_chunk = None
            doc = parse_json(raw)
            base = path.parent
    except GltfFormatError as exc:
        report.error(exc.code, exc.message, exc.pointer)
        return None
    g = Gltf(doc)
    for i, buf in enumerate(g.items("buffers")):
        ptr = f"/buffers/{i}"
        if "uri" in buf:
            data = resolve_uri(buf["uri"], ptr + "/uri", base, report)
        elif i == 0 and bin_chunk is not None:
            data = bin_chunk
        elif ((buf.get("extensions") or {}).get("EXT_meshopt_compression") or {}).get("fallback"):
            # EXT_meshopt_compression: a placeholder the decoder fills; it has no bytes.
            g.buffers.append(None)
            continue
        else:
            report.error("BUFFER_MISSING_GLB_DATA", "buffer has no uri and no GLB BIN chunk", ptr)
            data = None
        declared = as_int(buf.get("byteLength"))
        if data is not None and declared < 0:
            report.error("BUFFER_BYTELENGTH_INVALID", "byteLength must be an integer", ptr)
        elif data is not None and len(data) < declared:
            report.error(
                "BUFFER_BYTELENGTH_MISMATCH",
                f"byteLength {declared} but only {len(data)} bytes are present",
                ptr,
            )
        g.buffers.append(data)
    return g
