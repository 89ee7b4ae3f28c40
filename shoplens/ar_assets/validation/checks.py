"""The entry point: every check on one uploaded asset, in order, into one report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shoplens.ar_assets.gltf import Gltf
from shoplens.ar_assets.report import Report
from shoplens.ar_assets.validation.commerce import measure
from shoplens.ar_assets.validation.images import check_images
from shoplens.ar_assets.validation.khronos import run_khronos
from shoplens.ar_assets.validation.resources import load_asset
from shoplens.ar_assets.validation.structure import (
    check_extensions,
    check_references,
    check_views_and_accessors,
)


@dataclass
class Checked:
    """A parsed asset plus what the checks measured (``report.stats``)."""

    gltf: Gltf | None
    report: Report


def validate(path: Path, placement: str, file_bytes: int, *, khronos: bool = True) -> Checked:
    """All checks on ``path`` (a .glb, or a .gltf with its files beside it)."""
    report = Report()
    g = load_asset(path, report)
    if g is not None:
        try:
            check_views_and_accessors(g, report)
            check_references(g, report)
            check_extensions(g, report)
            base = None if path.suffix.lower() == ".glb" else path.parent
            sizes = check_images(g, base, report)
            measure(g, sizes, file_bytes, placement, report)
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
