"""What the checks measure (triangles, textures, size in metres) and the Khronos 3D
Commerce recommendations, reported as warnings, never errors.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shoplens.ar_assets.gltf import COMPONENT_DTYPES, Gltf, as_int, walk_nodes
from shoplens.ar_assets.report import Report

PLACEMENTS = ("floor", "wall", "table", "face", "head", "wrist", "foot")

# Khronos 3D Commerce asset creation guidelines (recommendations -> warnings).
MAX_TRIANGLES = 100_000
MAX_FILE_BYTES = 5_000_000
MAX_TEXTURE_PX = 2048

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
    """The KHR_materials_variants names, ``variant <i>`` for unnamed ones."""
    ext = (g.doc.get("extensions") or {}).get("KHR_materials_variants") or {}
    names = []
    for i, v in enumerate(ext.get("variants", []) or []):
        name = v.get("name") if isinstance(v, dict) else None
        names.append(str(name) if name else f"variant {i}")
    return names


def measure(
    g: Gltf, sizes: list[tuple[int, int]], file_bytes: int, placement: str, report: Report
) -> None:
    """Fill ``report.stats`` and warn where the asset departs from the recommendations."""
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
