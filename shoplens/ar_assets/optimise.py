"""Packing and the mobile variant, both done with glTF-Transform.

The mobile variant is kept only when the Khronos validator finds no error in
it and it is smaller than the served GLB; otherwise phones get the served GLB.
Draco uploads keep Draco (meshopt would make them bigger than what was sent);
the pipeline warns when phones still get more bytes than the upload. It is
made without GPU instancing, which Scene Viewer ignores; any extension
outside Scene Viewer's list is reported.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from shoplens.ar_assets import tools
from shoplens.ar_assets.gltf import GltfFormatError, parse_json, split_glb
from shoplens.ar_assets.report import Report
from shoplens.ar_assets.validation.commerce import MAX_TRIANGLES
from shoplens.ar_assets.validation.khronos import run_khronos

log = logging.getLogger(__name__)

MOBILE_TEXTURE_PX = 1024
# What the mobile GLB may rely on. Phones open it in model-viewer (three.js) and,
# through android_intent_url, in Scene Viewer, whose renderer is Filament's
# gltfio: its list of supported extensions, without EXT_mesh_gpu_instancing,
# which Scene Viewer draws once (one chair of six) instead of refusing.
# Quick Look never reads the GLB: it gets the USDZ.
SCENE_VIEWER_EXTENSIONS = frozenset(
    {
        "KHR_draco_mesh_compression",
        "EXT_meshopt_compression",
        "KHR_mesh_quantization",
        "KHR_texture_transform",
        "KHR_texture_basisu",
        "KHR_materials_unlit",
        "KHR_materials_variants",
        "KHR_materials_clearcoat",
        "KHR_materials_sheen",
        "KHR_materials_transmission",
        "KHR_materials_volume",
        "KHR_materials_ior",
        "KHR_materials_emissive_strength",
        "KHR_materials_pbrSpecularGlossiness",
        "KHR_lights_punctual",
    }
)


class PackFailed(Exception):
    pass


def pack_gltf(gltf_path: Path, out: Path) -> None:
    """A multi-file glTF as one self-contained GLB (PackFailed if glTF-Transform cannot)."""
    try:
        tools.gltf_transform(["copy", str(gltf_path), str(out)])
    except tools.ToolFailed as exc:
        raise PackFailed(f"cannot pack the glTF into a GLB: {exc}") from exc
    if not out.is_file():
        raise PackFailed("glTF-Transform wrote no GLB")


def mobile_args(src: Path, out: Path, triangles: int, compress: str = "meshopt") -> list[str]:
    args = [
        "optimize",
        str(src),
        str(out),
        # meshopt by default: model-viewer bundles its decoder. Draco where the
        # upload used it: smaller than meshopt for such meshes, and Scene Viewer
        # and the viewer page (decoder on our origin) both read it.
        "--compress",
        compress,
        "--texture-compress",
        "webp",
        "--texture-size",
        str(MOBILE_TEXTURE_PX),
        # Pruning "unused" attributes drops TEXCOORD_n that KHR_texture_transform
        # texCoord overrides still need (SheenChair): keep them.
        "--prune-attributes",
        "false",
        # Instancing would shrink repeated parts, but Scene Viewer ignores it.
        "--instance",
        "false",
    ]
    if triangles > MAX_TRIANGLES:
        ratio = max(0.05, MAX_TRIANGLES / triangles)
        args += ["--simplify", "true", "--simplify-ratio", f"{ratio:.3f}"]
        args += ["--simplify-error", "0.001"]
    else:
        args += ["--simplify", "false"]
    return args


@dataclass(frozen=True)
class Mobile:
    path: Path | None  # None: serve the original
    bytes: int
    khronos_errors: int | None  # on the candidate; None if the validator did not run


def make_mobile(
    src: Path, workdir: Path, triangles: int, report: Report, compress: str = "meshopt"
) -> Mobile:
    """Try an optimised variant of ``src``; notes what happened in ``report``.

    ``compress``: ``meshopt`` or ``draco`` (for uploads that came with Draco).
    """
    original = src.stat().st_size
    out = workdir / "mobile.glb"
    if tools.find_tools().gltf_transform is None:
        report.warn(
            "MOBILE_NOT_MADE",
            "no optimised variant for phones: glTF-Transform (Node) is not installed here, "
            "so phones get the original (`shoplens doctor` says how to install it)",
        )
        return Mobile(None, original, None)
    try:
        tools.gltf_transform(mobile_args(src, out, triangles, compress))
    except tools.ToolFailed as exc:
        report.info("MOBILE_NOT_MADE", f"no optimised variant (glTF-Transform: {exc})")
        return Mobile(None, original, None)
    check = Report()
    result = run_khronos(out, check)
    errors = None if result is None else int(result["issues"]["numErrors"])
    if result is not None:
        report.stats["mobile_triangles"] = result.get("info", {}).get("totalTriangleCount")
    size = out.stat().st_size
    if result is None:
        report.info("MOBILE_UNVALIDATED", "optimised variant not validated; serving the original")
        return Mobile(None, original, None)
    if errors:
        report.warn(
            "MOBILE_INVALID",
            f"the optimised variant had {errors} Khronos errors ({check.first_error()}); "
            "serving the original to phones",
        )
        return Mobile(None, original, errors)
    if size >= original:
        report.info("MOBILE_NOT_SMALLER", f"optimised {size} B >= original {original} B")
        return Mobile(None, original, errors)
    for ext in scene_viewer_gaps(out):
        report.warn(
            "MOBILE_EXTENSION_SCENE_VIEWER",
            f"the mobile variant uses {ext}, which Scene Viewer (Android) does not list",
        )
    simplified = ""
    if triangles > MAX_TRIANGLES:
        simplified = f", simplified to {report.stats.get('mobile_triangles')} triangles"
    report.info(
        "MOBILE_OPTIMISED",
        f"mobile variant {size} B (original {original} B): {compress} geometry, WebP textures "
        f"<= {MOBILE_TEXTURE_PX} px{simplified}, 0 Khronos errors",
    )
    return Mobile(out, size, errors)


def scene_viewer_gaps(glb: Path) -> list[str]:
    """Extensions the GLB uses that Scene Viewer does not list (see above)."""
    try:
        doc = parse_json(split_glb(glb.read_bytes())[0])
    except GltfFormatError:
        return []
    used = doc.get("extensionsUsed") or []
    return sorted(e for e in used if isinstance(e, str) and e not in SCENE_VIEWER_EXTENSIONS)


def decompress(src: Path, out: Path) -> None:
    """A plain GLB (no Draco/meshopt/quantization) for converters; ToolFailed on failure."""
    nm = tools.find_tools().node_modules
    if nm is None:
        raise tools.ToolFailed("node_modules not found")
    tools.run_node(
        [str(tools.NODE_SCRIPTS / "decompress.js"), str(nm), str(src), str(out)], timeout=180.0
    )
