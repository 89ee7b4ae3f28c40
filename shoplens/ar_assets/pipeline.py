"""One upload from bytes on disk to files ready to store: detect, check, pack, optimise, convert.

Nothing here touches the store: the caller stores the result only when this
returns, so a refused upload leaves the product's current asset untouched.

``RECIPE`` numbers the way the derived files (mobile GLB, USDZ) are made; every
result carries it in ``report.stats["recipe"]``, which the store keeps with the
row, and ``shoplens ar reconvert`` rebuilds the rows made by an older one.
"""

from __future__ import annotations

import logging
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shoplens.ar_assets import optimise, pack, tools, usdz, zipin
from shoplens.ar_assets.anchoring import Anchoring, for_placement
from shoplens.ar_assets.gltf import Gltf
from shoplens.ar_assets.placement import analyse as analyse_placement
from shoplens.ar_assets.report import Report
from shoplens.ar_assets.validation.checks import validate
from shoplens.ar_assets.validation.commerce import PLACEMENTS
from shoplens.ar_assets.validation.khronos import run_khronos
from shoplens.errors import BadParameter, InvalidAsset, TooLarge, UnsupportedMedia
from shoplens.files.atomic import sha256_file

log = logging.getLogger(__name__)

GLB_MAGIC = b"glTF"
ZIP_MAGIC = b"PK\x03\x04"
# Bump whenever a change here, in optimise.py or in usdz.py/anchoring.py changes the
# derived files of an upload that was accepted before; ``shoplens ar reconvert`` then
# rebuilds the stored assets. 1: rows without the stamp (USDZ without anchoring);
# 2: AR Quick Look anchoring from the placement.
RECIPE = 2

COMPRESSION_EXTS = (
    "KHR_draco_mesh_compression",
    "EXT_meshopt_compression",
    "KHR_mesh_quantization",
)


@dataclass
class Processed:
    report: Report
    source: tuple[str, str, Path]  # sha, ext, path of the upload as received
    glb: tuple[str, Path]  # what glb_url serves
    mobile: tuple[str, Path]
    usdz: tuple[str, Path] | None


def _reject(report: Report) -> InvalidAsset:
    return InvalidAsset(f"the 3D model is invalid: {report.first_error()}", report=report.to_dict())


def _pack(g: Gltf | None, gltf_path: Path, out: Path, report: Report) -> str:
    """glTF-Transform when available (it also tidies), else the pure-Python packer."""
    try:
        optimise.pack_gltf(gltf_path, out)
        return "glTF-Transform"
    except optimise.PackFailed as exc:
        if tools.find_tools().gltf_transform is not None:
            report.error("PACK_FAILED", str(exc))
            raise _reject(report) from exc
    try:
        if g is None:
            raise pack.PackError("nothing to pack")
        doc, blob = pack.pack(g, gltf_path.parent)
        pack.write_glb(doc, blob, out)
    except (pack.PackError, OSError, ValueError) as exc:
        report.error("PACK_FAILED", f"cannot pack the glTF into a GLB: {exc}")
        raise _reject(report) from exc
    return "Shoplens' own packer (glTF-Transform is not installed)"


def check_placement(placement: str) -> str:
    if placement not in PLACEMENTS:
        raise BadParameter(f"placement must be one of {', '.join(PLACEMENTS)}, not {placement!r}")
    return placement


def process(upload: Path, placement: str, max_bytes: int, workdir: Path) -> Processed:
    """Check and convert ``upload``; InvalidAsset (422, with ``report``), 413 or 415 if refused."""
    check_placement(placement)
    size = upload.stat().st_size
    if size > max_bytes:
        raise TooLarge(f"the model is {size} bytes; the limit is {max_bytes}")
    with open(upload, "rb") as f:
        head = f.read(4)
    if head == GLB_MAGIC:
        kind = "glb"
        src = workdir / "upload.glb"
        shutil.copyfile(upload, src)
        checked = validate(src, placement, size)
        report = checked.report
        if not report.ok:
            raise _reject(report)
        glb = src
    elif head == ZIP_MAGIC:
        kind = "zip"
        src = workdir / "upload.zip"
        shutil.copyfile(upload, src)
        report = Report()
        unpacked = zipin.unpack(src, workdir / "unzipped", max(4 * max_bytes, 1 << 26), report)
        if unpacked.usd_only:
            raise UnsupportedMedia(
                "USD/USDZ uploads are not accepted: upload the glTF (.glb or zipped .gltf); "
                "Shoplens makes the USDZ itself"
            )
        if not report.ok or unpacked.gltf_path is None:
            raise _reject(report)
        checked = validate(unpacked.gltf_path, placement, size)
        report = checked.report
        if not report.ok:
            raise _reject(report)
        glb = workdir / "packed.glb"
        packer = _pack(checked.gltf, unpacked.gltf_path, glb, report)
        packed_check = Report()
        if run_khronos(glb, packed_check) is not None and not packed_check.ok:
            report.error("PACK_INVALID", f"the packed GLB is invalid: {packed_check.first_error()}")
            raise _reject(report)
        report.info(
            "ZIP_PACKED",
            f"the zipped glTF was packed into one GLB by {packer}; glb_url serves that "
            "GLB and the original zip is kept in the store",
        )
    else:
        raise UnsupportedMedia("not a 3D model Shoplens accepts: upload a .glb or a zipped .gltf")

    # How try-on will wear it (face/head/wrist/foot): stats.tryon plus TRYON_* warnings.
    analyse_placement(checked.gltf, placement, report)
    glb_sha = sha256_file(glb)
    src_sha = glb_sha if kind == "glb" else sha256_file(src)
    triangles = int(report.stats.get("triangles", 0))

    used = checked.gltf.doc.get("extensionsUsed") or [] if checked.gltf is not None else []
    compressed = any(e in COMPRESSION_EXTS for e in used)
    # The mobile variant (Node) and the USDZ (Node, then pxr) do not depend on each
    # other: build them side by side, each noting into its own report.
    mobile_report = Report()
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(optimise.make_mobile, glb, workdir, triangles, mobile_report)
        usdz_out = _make_usdz(glb, compressed, workdir, report, for_placement(placement))
        mobile = pending.result()
    report.merge(mobile_report)
    mobile_path = mobile.path or glb
    mobile_sha = sha256_file(mobile_path) if mobile.path else glb_sha
    report.stats["bytes"] = glb.stat().st_size
    report.stats["mobile_bytes"] = mobile_path.stat().st_size
    report.stats["mobile_khronos_errors"] = mobile.khronos_errors
    report.stats["recipe"] = RECIPE
    return Processed(
        report=report,
        source=(src_sha, kind, src),
        glb=(glb_sha, glb),
        mobile=(mobile_sha, mobile_path),
        usdz=(sha256_file(usdz_out), usdz_out) if usdz_out else None,
    )


def recipe_of(report: dict[str, Any]) -> int:
    """The recipe a stored row's files were made with (1 for rows from before the stamp)."""
    stats = report.get("stats")
    value = stats.get("recipe", 1) if isinstance(stats, dict) else 1
    return value if isinstance(value, int) else 1


def _make_usdz(
    glb: Path, compressed: bool, workdir: Path, report: Report, anchoring: Anchoring
) -> Path | None:
    plain = workdir / "plain.glb"
    try:
        optimise.decompress(glb, plain)
    except tools.ToolFailed as exc:
        if compressed:
            report.warn("USDZ_NOT_MADE", f"no USDZ: compressed geometry cannot be decoded ({exc})")
            report.stats["usdz_check"] = "not made"
            return None
        plain = glb
    out = workdir / "model.usdz"
    try:
        # The anchoring is part of the file, so of its sha256 name: the same GLB with
        # another placement gets another USDZ, never the one stored for the first.
        result = usdz.convert(plain, out, workdir / "usd", anchoring=anchoring)
    except usdz.UsdzFailed as exc:
        report.warn("USDZ_NOT_MADE", f"no USDZ for Quick Look: {exc}")
        report.stats["usdz_check"] = "not made"
        return None
    for note in result.notes:
        report.info("USDZ_APPROXIMATION", note)
    for w in result.checker_warnings:
        report.add("warning", "USDZ_CHECK_WARNING", w, source="usd")
    if result.checker_errors:
        for e in result.checker_errors:
            report.add("warning", "USDZ_CHECK_ERROR", e, source="usd")
        report.warn("USDZ_NOT_SERVED", "the USDZ failed the USD checks; no Quick Look file")
        report.stats["usdz_check"] = f"failed ({len(result.checker_errors)} errors)"
        return None
    report.stats["usdz_check"] = "passed (UsdValidation, all validators)"
    report.stats["usdz_anchoring"] = anchoring.label
    report.stats["usdz_bytes"] = out.stat().st_size
    return out
