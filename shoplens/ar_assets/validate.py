"""Checks a glTF before anything is stored: structure, resources, extensions, commerce rules.

``validate(path, placement)`` reads a ``.glb`` or an unpacked ``.gltf`` (its
resources beside it), runs Shoplens' own checks and the Khronos glTF
validator (when Node and ``gltf-validator`` are installed), and returns the
parsed asset with a :class:`Report`. Any error means the upload is refused.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote

import numpy as np
from PIL import Image

from shoplens.ar_assets import tools
from shoplens.ar_assets.gltf import (
    COMPONENT_DTYPES,
    TYPE_SIZES,
    Gltf,
    GltfFormatError,
    as_int,
    parse_json,
    split_glb,
    view_bytes,
    walk_nodes,
)
from shoplens.ar_assets.report import Report, Severity

PLACEMENTS = ("floor", "wall", "table", "face", "head", "wrist", "foot")

SUPPORTED_EXTENSIONS = frozenset(
    {
        "KHR_draco_mesh_compression",
        "EXT_meshopt_compression",
        "KHR_texture_basisu",
        "EXT_texture_webp",
        "KHR_mesh_quantization",
        "KHR_texture_transform",
        "KHR_lights_punctual",
        "KHR_materials_variants",
        "KHR_materials_clearcoat",
        "KHR_materials_sheen",
        "KHR_materials_transmission",
        "KHR_materials_volume",
        "KHR_materials_ior",
        "KHR_materials_iridescence",
        "KHR_materials_emissive_strength",
        "KHR_materials_specular",
        "KHR_materials_unlit",
    }
)

# Khronos 3D Commerce asset creation guidelines (recommendations -> warnings).
MAX_TRIANGLES = 100_000
MAX_FILE_BYTES = 5_000_000
MAX_TEXTURE_PX = 2048
DATA_URI_MAX_BYTES = 16 * 1024 * 1024
KHRONOS_TIMEOUT_S = 120.0

# Plausible largest dimension (metres) per placement: outside => probably not metres / not +Y up.
PLAUSIBLE_MAX_DIM: dict[str, tuple[float, float]] = {
    "floor": (0.05, 10.0),
    "wall": (0.05, 10.0),
    "table": (0.01, 2.0),
    "face": (0.05, 0.5),
    "head": (0.1, 0.8),
    "wrist": (0.01, 0.4),
    "foot": (0.1, 0.6),
}
KTX2_MAGIC = b"\xabKTX 20\xbb\r\n\x1a\n"


@dataclass
class Checked:
    """A parsed asset plus what the checks measured (``report.stats``)."""

    gltf: Gltf | None
    report: Report


# ---------------------------------------------------------------- resources


def _resolve_uri(uri: Any, pointer: str, base: Path | None, report: Report) -> bytes | None:
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


def _load(path: Path, report: Report) -> Gltf | None:
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
            data = _resolve_uri(buf["uri"], ptr + "/uri", base, report)
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


# ---------------------------------------------------------------- structure


def _check_views_and_accessors(g: Gltf, report: Report) -> None:
    nbuf = len(g.buffers)
    for i, view in enumerate(g.items("bufferViews")):
        ptr = f"/bufferViews/{i}"
        bi = as_int(view.get("buffer"))
        if not 0 <= bi < nbuf:
            report.error("BUFFER_VIEW_BUFFER_INVALID", f"buffer {bi} does not exist", ptr)
            continue
        buf = g.buffers[bi]
        off, length = as_int(view.get("byteOffset"), 0), as_int(view.get("byteLength"))
        if off < 0 or length < 1:
            report.error("BUFFER_VIEW_RANGE_INVALID", "bad byteOffset/byteLength", ptr)
        elif buf is not None and off + length > len(buf):
            report.error(
                "BUFFER_VIEW_TOO_LONG",
                f"bytes {off}..{off + length} exceed buffer {bi} ({len(buf)} bytes)",
                ptr,
            )
    nviews = len(g.items("bufferViews"))
    for i, acc in enumerate(g.items("accessors")):
        ptr = f"/accessors/{i}"
        ctype = as_int(acc.get("componentType"))
        atype = acc.get("type")
        count = as_int(acc.get("count"))
        if ctype not in COMPONENT_DTYPES or atype not in TYPE_SIZES or count < 1:
            report.error("ACCESSOR_INVALID", "bad componentType, type or count", ptr)
            continue
        if "bufferView" not in acc:
            continue  # all zeros (or sparse only)
        vi = as_int(acc.get("bufferView"))
        if not 0 <= vi < nviews:
            report.error("ACCESSOR_BUFFER_VIEW_INVALID", f"bufferView {vi} does not exist", ptr)
            continue
        resolved = view_bytes(g, vi)
        if resolved is None:
            continue  # the view's own problem is reported above
        raw, stride = resolved
        elem = np.dtype(COMPONENT_DTYPES[ctype]).itemsize * TYPE_SIZES[str(atype)]
        start = as_int(acc.get("byteOffset"), 0)
        need = start + (count - 1) * (stride or elem) + elem
        if start < 0 or need > len(raw):
            report.error(
                "ACCESSOR_TOO_LONG",
                f"{count} elements need {need} bytes but bufferView {vi} has {len(raw)}",
                ptr,
            )


def _check_references(g: Gltf, report: Report) -> None:
    naccessors, nmeshes = len(g.items("accessors")), len(g.items("meshes"))
    nnodes, nmaterials = len(g.items("nodes")), len(g.items("materials"))
    for m, mesh in enumerate(g.items("meshes")):
        for p, prim in enumerate(mesh.get("primitives", []) or []):
            ptr = f"/meshes/{m}/primitives/{p}"
            if not isinstance(prim, dict):
                report.error("MESH_PRIMITIVE_INVALID", "primitive is not an object", ptr)
                continue
            attrs = prim.get("attributes", {})
            refs = list(attrs.items()) if isinstance(attrs, dict) else []
            if "indices" in prim:
                refs.append(("indices", prim["indices"]))
            for name, ai in refs:
                if not 0 <= as_int(ai) < naccessors:
                    report.error("ACCESSOR_INDEX_INVALID", f"{name} -> accessor {ai}", ptr)
            if "material" in prim and not 0 <= as_int(prim["material"]) < nmaterials:
                report.error("MATERIAL_INDEX_INVALID", f"material {prim['material']}", ptr)
    for n, node in enumerate(g.items("nodes")):
        if "mesh" in node and not 0 <= as_int(node["mesh"]) < nmeshes:
            report.error("NODE_MESH_INVALID", f"mesh {node['mesh']} does not exist", f"/nodes/{n}")
        for c in node.get("children", []) or []:
            if not 0 <= as_int(c) < nnodes:
                report.error("NODE_CHILD_INVALID", f"child {c} does not exist", f"/nodes/{n}")


def _check_extensions(g: Gltf, report: Report) -> None:
    required = g.doc.get("extensionsRequired", []) or []
    used = g.doc.get("extensionsUsed", []) or []
    for ext in required:
        if ext not in SUPPORTED_EXTENSIONS:
            report.error(
                "UNSUPPORTED_REQUIRED_EXTENSION",
                f"the model requires extension {ext}, which Shoplens cannot handle",
                "/extensionsRequired",
            )
    for ext in used:
        if ext not in SUPPORTED_EXTENSIONS and ext not in required:
            report.info(
                "EXTENSION_IGNORED",
                f"optional extension {ext} is not supported by Shoplens and may be dropped "
                "from the optimised and USDZ variants",
                "/extensionsUsed",
            )


def _image_size(data: bytes, ptr: str, report: Report) -> tuple[int, int] | None:
    if data[:12] == KTX2_MAGIC:
        if len(data) < 80:
            report.error("IMAGE_KTX2_TRUNCATED", "KTX2 header is truncated", ptr)
            return None
        width, height = struct.unpack_from("<II", data, 20)
        if width < 1:
            report.error("IMAGE_KTX2_INVALID", "KTX2 header has zero width", ptr)
            return None
        return width, max(height, 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                if im.format not in ("PNG", "JPEG", "WEBP"):
                    report.error(
                        "IMAGE_UNSUPPORTED_FORMAT", f"{im.format} textures are not allowed", ptr
                    )
                    return None
                im.load()  # decode fully: a truncated texture must not pass
                return im.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombWarning) as exc:
        report.error("IMAGE_UNDECODABLE", f"the image does not decode: {exc}", ptr)
    except Image.DecompressionBombError as exc:
        report.error("IMAGE_TOO_LARGE", str(exc), ptr)
    return None


def _check_images(g: Gltf, base: Path | None, report: Report) -> list[tuple[int, int]]:
    sizes: list[tuple[int, int]] = []
    for i, img in enumerate(g.items("images")):
        ptr = f"/images/{i}"
        data: bytes | None = None
        if "uri" in img:
            data = _resolve_uri(img["uri"], ptr + "/uri", base, report)
        elif "bufferView" in img:
            resolved = view_bytes(g, as_int(img["bufferView"]))
            if resolved is None:
                report.error("IMAGE_BUFFER_VIEW_INVALID", "image bufferView is unreadable", ptr)
            else:
                data = resolved[0]
        else:
            report.error("IMAGE_NO_DATA", "image has neither uri nor bufferView", ptr)
        if data is not None:
            size = _image_size(data, ptr, report)
            if size is not None:
                sizes.append(size)
    return sizes


# ---------------------------------------------------------------- measures


def _triangles(g: Gltf) -> int:
    accessors = g.items("accessors")
    total = 0
    for mesh in g.items("meshes"):
        for prim in mesh.get("primitives", []) or []:
            if not isinstance(prim, dict):
                continue
            mode = as_int(prim.get("mode"), 4)
            ai = as_int(prim.get("indices"))
            if not 0 <= ai < len(accessors):
                ai = as_int((prim.get("attributes") or {}).get("POSITION"))
            n = as_int(accessors[ai].get("count"), 0) if 0 <= ai < len(accessors) else 0
            if mode == 4:
                total += n // 3
            elif mode in (5, 6):
                total += max(n - 2, 0)
    return total


def _normalised(accessor: dict[str, Any], values: list[Any]) -> list[float]:
    """min/max are stored in component units; KHR_mesh_quantization may normalise them."""
    ctype = as_int(accessor.get("componentType"))
    if not accessor.get("normalized") or ctype not in COMPONENT_DTYPES or ctype == 5126:
        return [float(v) for v in values]
    top = float(np.iinfo(np.dtype(COMPONENT_DTYPES[ctype])).max)
    return [max(float(v) / top, -1.0) for v in values]


def _bounds(g: Gltf) -> tuple[list[float], list[float]] | None:
    """World-space AABB from POSITION min/max (present even when Draco-compressed)."""
    accessors, meshes = g.items("accessors"), g.items("meshes")
    lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
    for ni, world in walk_nodes(g):
        mi = as_int(g.items("nodes")[ni].get("mesh"))
        if not 0 <= mi < len(meshes):
            continue
        for prim in meshes[mi].get("primitives", []) or []:
            ai = as_int((prim.get("attributes") or {}).get("POSITION"))
            if not 0 <= ai < len(accessors):
                continue
            amin, amax = accessors[ai].get("min"), accessors[ai].get("max")
            if not (isinstance(amin, list) and isinstance(amax, list)):
                continue
            if len(amin) != 3 or len(amax) != 3:
                continue
            amin, amax = _normalised(accessors[ai], amin), _normalised(accessors[ai], amax)
            corners = np.array(
                [
                    [x, y, z, 1.0]
                    for x in (amin[0], amax[0])
                    for y in (amin[1], amax[1])
                    for z in (amin[2], amax[2])
                ],
                dtype=np.float64,
            )
            pts = (world @ corners.T).T[:, :3]
            lo, hi = np.minimum(lo, pts.min(0)), np.maximum(hi, pts.max(0))
    if not np.isfinite(lo).all():
        return None
    return [float(v) for v in lo], [float(v) for v in hi]


def variant_names(g: Gltf) -> list[str]:
    ext = (g.doc.get("extensions") or {}).get("KHR_materials_variants") or {}
    names = []
    for i, v in enumerate(ext.get("variants", []) or []):
        name = v.get("name") if isinstance(v, dict) else None
        names.append(str(name) if name else f"variant {i}")
    return names


def _measure(
    g: Gltf, sizes: list[tuple[int, int]], file_bytes: int, placement: str, report: Report
) -> None:
    tris = _triangles(g)
    report.stats["triangles"] = tris
    report.stats["textures"] = len(sizes)
    report.stats["max_texture_px"] = max((max(s) for s in sizes), default=0)
    report.stats["variants"] = variant_names(g)
    if tris > MAX_TRIANGLES:
        report.warn("COMMERCE_TRIANGLES", f"{tris} triangles (recommended <= {MAX_TRIANGLES})")
    if file_bytes > MAX_FILE_BYTES:
        report.warn("COMMERCE_FILE_SIZE", f"{file_bytes} bytes (recommended <= 5 MB)")
    for i, (w, h) in enumerate(sizes):
        if w & (w - 1) or h & (h - 1):
            report.warn(
                "COMMERCE_TEXTURE_NOT_POT", f"texture {w}x{h} is not a power of two", f"/images/{i}"
            )
        if max(w, h) > MAX_TEXTURE_PX:
            report.warn(
                "COMMERCE_TEXTURE_TOO_LARGE", f"texture {w}x{h} exceeds 2048 px", f"/images/{i}"
            )
    bounds = _bounds(g)
    if bounds is None:
        report.stats["dimensions_m"] = {"x": 0.0, "y": 0.0, "z": 0.0}
        report.warn("NO_BOUNDS", "no mesh with POSITION min/max in the default scene")
        return
    lo, hi = bounds
    dims = [h - lo_ for lo_, h in zip(lo, hi, strict=True)]
    report.stats["dimensions_m"] = {k: round(v, 4) for k, v in zip("xyz", dims, strict=True)}
    report.stats["bounds_m"] = {"min": lo, "max": hi}
    low, high = PLAUSIBLE_MAX_DIM[placement]
    biggest = max(dims)
    if biggest < 0.01 or biggest < low or biggest > high:
        report.warn(
            "COMMERCE_IMPLAUSIBLE_SIZE",
            f"largest dimension {biggest:.3f} m is implausible for a {placement} item "
            f"(expected {low}-{high} m); glTF units are metres with +Y up",
        )
    if placement == "floor":
        height = max(dims[1], 1e-9)
        cx, cz = (lo[0] + hi[0]) / 2, (lo[2] + hi[2]) / 2
        off_bottom = abs(lo[1]) > max(0.01, 0.02 * height)
        off_centre = max(abs(cx), abs(cz)) > max(0.01, 0.05 * max(dims[0], dims[2]))
        if off_bottom or off_centre:
            report.warn(
                "COMMERCE_ORIGIN",
                f"origin is not at the bottom centre (min y {lo[1]:.3f} m, centre x {cx:.3f}, "
                f"z {cz:.3f}); floor items should stand on y = 0",
            )


# ---------------------------------------------------------------- Khronos


def run_khronos(path: Path, report: Report, prefix: str = "") -> dict[str, Any] | None:
    """Merge the Khronos validator's messages into ``report`` (None if it could not run)."""
    validator = tools.find_tools().validator
    if validator is None:
        report.khronos_validator = "unavailable (node or gltf-validator missing)"
        report.info(
            "KHRONOS_VALIDATOR_UNAVAILABLE",
            "the Khronos glTF validator is not installed; only Shoplens' own checks ran",
        )
        return None
    script = tools.NODE_SCRIPTS / "khronos_validate.js"
    try:
        out = tools.run_node([str(script), str(validator), str(path)], timeout=KHRONOS_TIMEOUT_S)
        result: dict[str, Any] = json.loads(out)
    except (tools.ToolFailed, json.JSONDecodeError) as exc:
        report.khronos_validator = f"failed ({exc})"
        report.warn("KHRONOS_VALIDATOR_FAILED", f"the Khronos validator did not run: {exc}")
        return None
    issues = result.get("issues", {})
    report.khronos_validator = (
        f"{result.get('validatorVersion', '?')}: {issues.get('numErrors', 0)} errors, "
        f"{issues.get('numWarnings', 0)} warnings"
    )
    severities: dict[int, Severity] = {0: "error", 1: "warning", 2: "info"}
    for msg in issues.get("messages", []):
        sev = severities.get(int(msg.get("severity", 3)))
        if sev is None:
            continue  # hints
        pointer = msg.get("pointer") or (f"@{msg['offset']}" if "offset" in msg else "")
        report.add(
            sev,
            str(msg.get("code")),
            prefix + str(msg.get("message")),
            str(pointer),
            source="khronos",
        )
    if int(issues.get("numErrors", 0)) and not report.errors:
        report.add(
            "error", "KHRONOS_ERRORS", "the Khronos validator reported errors", source="khronos"
        )
    return result


# ---------------------------------------------------------------- entry point


def validate(path: Path, placement: str, file_bytes: int, *, khronos: bool = True) -> Checked:
    """All checks on ``path`` (a .glb, or a .gltf with its files beside it)."""
    report = Report()
    g = _load(path, report)
    if g is not None:
        try:
            _check_views_and_accessors(g, report)
            _check_references(g, report)
            _check_extensions(g, report)
            base = None if path.suffix.lower() == ".glb" else path.parent
            sizes = _check_images(g, base, report)
            _measure(g, sizes, file_bytes, placement, report)
        except (AttributeError, TypeError, KeyError, IndexError, ValueError) as exc:
            # Hostile JSON of the wrong shape (a dict where a list belongs...) that a
            # check above did not foresee: a 422 naming it, never a 500.
            report.error(
                "JSON_UNEXPECTED_SHAPE",
                f"the glTF JSON has an unexpected structure ({type(exc).__name__}: {exc})",
            )
    uri_errors = any(e.code.startswith("URI_") for e in report.errors)
    if khronos and not uri_errors:
        # Never let the validator resolve URIs we refused (it would read them).
        result = run_khronos(path, report)
        if result is not None and g is not None:
            total = result.get("info", {}).get("totalTriangleCount")
            if isinstance(total, int):
                report.stats["khronos_triangles"] = total
    elif khronos:
        report.khronos_validator = "not run (unsafe URIs)"
    return Checked(g if report.ok else None, report)
