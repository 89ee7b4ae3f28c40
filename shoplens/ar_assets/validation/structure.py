"""Structural checks: buffer views and accessors within their bytes, references
between objects pointing at objects that exist, and the extensions a model needs.
"""

from __future__ import annotations

import numpy as np

from shoplens.ar_assets.gltf import COMPONENT_DTYPES, TYPE_SIZES, Gltf, as_int, view_bytes
from shoplens.ar_assets.report import Report

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
        "KHR_materials_pbrSpecularGlossiness",  # converted to metal/rough (pipeline.py)
    }
)


def check_views_and_accessors(g: Gltf, report: Report) -> None:
    """Every buffer view inside its buffer, every accessor inside its buffer view."""
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


def check_references(g: Gltf, report: Report) -> None:
    """Indices from primitives and nodes name accessors, materials, meshes and nodes that exist."""
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


def check_extensions(g: Gltf, report: Report) -> None:
    """Errors for required extensions Shoplens cannot handle; a note for ignored optional ones."""
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
