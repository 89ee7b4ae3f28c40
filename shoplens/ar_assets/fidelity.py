"""How true the derived files are to the upload: real sizes and the report's USDZ section.

``measure_plain`` re-measures the model from its decoded (plain) GLB: every
vertex in world space, skinned meshes in their rest pose, quantized positions
dequantized. The first measure (``validation/commerce.py``) reads only accessor
min/max, which is all a Draco/meshopt upload offers before decoding; a box
around a rotated part's box overstates, and a skinned mesh's own coordinates
are not where its joints put it.

``usdz_section`` fills ``report.usdz``: ``check`` (``passed`` or ``degraded``),
``degraded`` (a texture or the vertex colours did not make it into the USDZ),
``approximated`` and ``lost`` (one line per material or texture), and the same
for each material variant's USDZ.
"""

from __future__ import annotations

from pathlib import Path

from shoplens.ar_assets.gltf import GltfFormatError, world_bounds
from shoplens.ar_assets.report import Report
from shoplens.ar_assets.usdz import read_glb
from shoplens.ar_assets.usdz.variants import UsdzSet


def measure_plain(plain: Path, placement: str, report: Report) -> None:
    """Replace ``dimensions_m``/``bounds_m`` by the world-space vertex bounds."""
    try:
        bounds = world_bounds(read_glb(plain))
    except (GltfFormatError, ValueError, IndexError, KeyError, TypeError):
        return  # geometry numpy cannot read (validated, so rare): keep the accessor measure
    if bounds is None:
        return
    lo, hi = bounds
    dims = {k: round(float(h - lo_), 4) for k, lo_, h in zip("xyz", lo, hi, strict=True)}
    before = report.stats.get("dimensions_m")
    report.stats["dimensions_m"] = dims
    report.stats["bounds_m"] = {"min": [float(v) for v in lo], "max": [float(v) for v in hi]}
    if isinstance(before, dict) and any(
        abs(float(before.get(k, 0.0)) - v) > max(0.005, 0.01 * v) for k, v in dims.items()
    ):
        report.info(
            "DIMENSIONS_FROM_VERTICES",
            f"dimensions measured on the world-space vertices (skins in rest pose): {dims} m; "
            f"the accessor bounds said {before} m",
        )


def usdz_section(report: Report, made: UsdzSet) -> None:
    d = made.default
    for note in d.approximated:
        report.info("USDZ_APPROXIMATION", note)
    for note in d.lost:
        report.warn("USDZ_LOST", note)
    for name, why in made.failed.items():
        report.warn("USDZ_VARIANT_NOT_MADE", f"no USDZ for material variant {name!r}: {why}")
    variants = {
        name: {"degraded": r.degraded, "approximated": r.approximated, "lost": r.lost}
        for name, r in made.variants.items()
    }
    for name, r in made.variants.items():
        for note in r.lost:
            report.warn("USDZ_LOST", f"variant {name!r}: {note}")
    if made.degraded:
        lost = len(d.lost) + sum(len(r.lost) for r in made.variants.values())
        check = f"degraded: {lost} textures or colours lost (passes UsdValidation)"
        report.warn(
            "USDZ_DEGRADED",
            "the USDZ for Quick Look shows less than the model: see the report's usdz.lost",
        )
    else:
        check = "passed (UsdValidation, all validators)"
    report.stats["usdz_check"] = check
    report.stats["usdz_degraded"] = made.degraded
    report.usdz.update(
        {
            "check": check,
            "degraded": made.degraded,
            "approximated": d.approximated,
            "lost": d.lost,
            "variants": variants,
        }
    )
