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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shoplens.ar_assets import optimise, pack, tools, zipin
from shoplens.ar_assets.anchoring import Anchoring, for_placement
from shoplens.ar_assets.fidelity import measure_plain, usdz_section
from shoplens.ar_assets.gltf import Gltf, GltfFormatError, parse_json
from shoplens.ar_assets.placement import analyse as analyse_placement
from shoplens.ar_assets.report import Report
from shoplens.ar_assets.usdz import UsdzFailed
from shoplens.ar_assets.usdz.variants import UsdzSet, convert_all
from shoplens.ar_assets.validation.checks import Checked, validate
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
# 2: AR Quick Look anchoring from the placement; 3: USDZ fidelity (texture
# transforms, vertex colours, KTX2, one USDZ per material variant, rest-pose
# skins on the floor) and dimensions from world-space vertices.
RECIPE = 3
SPEC_GLOSS = "KHR_materials_pbrSpecularGlossiness"

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
    variant_usdz: dict[str, tuple[str, Path]] = field(default_factory=dict)  # by variant name


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


def _is_gltf_json(head: bytes) -> bool:
    return head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{")


def _self_contained(gltf_path: Path, report: Report) -> None:
    """A .gltf sent alone must carry its buffers and images as data: URIs."""
    try:
        doc = parse_json(gltf_path.read_bytes())
    except GltfFormatError as exc:
        report.error(exc.code, exc.message, exc.pointer)
        return
    for key in ("buffers", "images"):
        items = doc.get(key)
        for i, item in enumerate(items if isinstance(items, list) else []):
            uri = item.get("uri") if isinstance(item, dict) else None
            if isinstance(uri, str) and not uri.startswith("data:"):
                report.error(
                    "GLTF_NOT_SELF_CONTAINED",
                    f"a .gltf sent alone must embed its files as data: URIs, but {key} {i} "
                    f"names {uri!r}: upload a .zip of the .gltf with its files, or a .glb",
                    f"/{key}/{i}/uri",
                )


def _check_glb(glb: Path, placement: str, size: int) -> Checked:
    checked = validate(glb, placement, size)
    if not checked.report.ok:
        raise _reject(checked.report)
    return checked


def _packed(
    gltf_path: Path, placement: str, size: int, workdir: Path, what: str
) -> tuple[Checked, Path]:
    """Check a .gltf (with its files beside it) and pack it into one GLB."""
    checked = _check_glb(gltf_path, placement, size)
    report = checked.report
    glb = workdir / "packed.glb"
    packer = _pack(checked.gltf, gltf_path, glb, report)
    packed_check = Report()
    if run_khronos(glb, packed_check) is not None and not packed_check.ok:
        report.error("PACK_INVALID", f"the packed GLB is invalid: {packed_check.first_error()}")
        raise _reject(report)
    report.info(
        "ZIP_PACKED",
        f"the {what} was packed into one GLB by {packer}; glb_url serves that "
        "GLB and the original upload is kept in the store",
    )
    return checked, glb


def _receive(
    upload: Path, placement: str, max_bytes: int, workdir: Path
) -> tuple[str, Path, Path, Checked]:
    """(kind, stored source, GLB to serve, its checks) of an upload; raises if refused."""
    size = upload.stat().st_size
    with open(upload, "rb") as f:
        head = f.read(64)
    if head[:4] == GLB_MAGIC:
        src = workdir / "upload.glb"
        shutil.copyfile(upload, src)
        return "glb", src, src, _check_glb(src, placement, size)
    if head[:4] == ZIP_MAGIC:
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
        if unpacked.is_glb:
            return "zip", src, unpacked.gltf_path, _check_glb(unpacked.gltf_path, placement, size)
        checked, glb = _packed(unpacked.gltf_path, placement, size, workdir, "zipped glTF")
        return "zip", src, glb, checked
    if _is_gltf_json(head):
        # Alone in a folder of its own: a relative URI could name nothing else.
        src = workdir / "gltf" / "upload.gltf"
        src.parent.mkdir()
        shutil.copyfile(upload, src)
        report = Report()
        _self_contained(src, report)
        if not report.ok:
            raise _reject(report)
        checked, glb = _packed(src, placement, size, workdir, "self-contained .gltf")
        return "gltf", src, glb, checked
    raise UnsupportedMedia(
        "not a 3D model Shoplens accepts: upload a .glb, a self-contained .gltf or a zip"
    )


def _metal_rough(glb: Path, used: list[Any], workdir: Path, report: Report) -> Path:
    """KHR_materials_pbrSpecularGlossiness converted to metal/rough by glTF-Transform.

    model-viewer (three.js) and Quick Look show only metal/rough, so the served
    GLB is the converted one; the upload as sent stays in the store.
    """
    if SPEC_GLOSS not in used:
        return glb
    out = workdir / "metalrough.glb"
    try:
        tools.gltf_transform(["metalrough", str(glb), str(out)])
    except tools.ToolFailed as exc:
        report.error(
            "SPEC_GLOSS_NOT_CONVERTED",
            f"{SPEC_GLOSS} must be converted to metal/rough, which needs glTF-Transform: {exc}",
        )
        raise _reject(report) from exc
    report.info(
        "SPEC_GLOSS_CONVERTED",
        f"{SPEC_GLOSS} materials converted to metal/rough by glTF-Transform (metalrough); "
        "glb_url serves the converted GLB",
    )
    return out


def process(upload: Path, placement: str, max_bytes: int, workdir: Path) -> Processed:
    """Check and convert ``upload``; InvalidAsset (422, with ``report``), 413 or 415 if refused."""
    check_placement(placement)
    size = upload.stat().st_size
    if size > max_bytes:
        raise TooLarge(f"the model is {size} bytes; the limit is {max_bytes}")
    kind, src, glb, checked = _receive(upload, placement, max_bytes, workdir)
    report = checked.report
    used = checked.gltf.doc.get("extensionsUsed") or [] if checked.gltf is not None else []
    glb = _metal_rough(glb, used, workdir, report)
    glb_sha = sha256_file(glb)
    # The served GLB is the upload itself only for a .glb sent as is (not converted).
    src_sha = glb_sha if glb == src else sha256_file(src)
    triangles = int(report.stats.get("triangles", 0))
    compressed = any(e in COMPRESSION_EXTS for e in used)
    # The mobile variant (Node) and the decoding, measuring and USDZs (Node, then
    # numpy and pxr) do not depend on each other: build them side by side, each
    # noting into its own report.
    mobile_report = Report()
    codec = "draco" if "KHR_draco_mesh_compression" in used else "meshopt"
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(optimise.make_mobile, glb, workdir, triangles, mobile_report, codec)
        plain = _plain(glb, compressed, workdir, report)
        usdz_set = None
        if plain is not None:
            measure_plain(plain, placement, report)
            usdz_set = _make_usdz(plain, workdir, report, for_placement(placement))
        mobile = pending.result()
    report.merge(mobile_report)
    # How try-on will wear it (face/head/wrist/foot), from the vertex bounds just
    # measured: stats.tryon plus TRYON_* warnings.
    analyse_placement(checked.gltf, placement, report)
    mobile_path = mobile.path or glb
    mobile_sha = sha256_file(mobile_path) if mobile.path else glb_sha
    report.stats["bytes"] = glb.stat().st_size
    report.stats["mobile_bytes"] = mobile_path.stat().st_size
    if report.stats["mobile_bytes"] > size:
        report.warn(
            "MOBILE_BIGGER_THAN_UPLOAD",
            f"phones get {report.stats['mobile_bytes']} B, more than the {size} B uploaded "
            "(the packed or converted GLB; no smaller valid variant could be made)",
        )
    report.stats["mobile_khronos_errors"] = mobile.khronos_errors
    report.stats["recipe"] = RECIPE
    usdz_out = usdz_set.default.path if usdz_set is not None else None
    variant_usdz = {
        name: (sha256_file(r.path), r.path)
        for name, r in (usdz_set.variants.items() if usdz_set else [])
    }
    return Processed(
        report=report,
        source=(src_sha, kind, src),
        glb=(glb_sha, glb),
        mobile=(mobile_sha, mobile_path),
        usdz=(sha256_file(usdz_out), usdz_out) if usdz_out else None,
        variant_usdz=variant_usdz,
    )


def recipe_of(report: dict[str, Any]) -> int:
    """The recipe a stored row's files were made with (1 for rows from before the stamp)."""
    stats = report.get("stats")
    value = stats.get("recipe", 1) if isinstance(stats, dict) else 1
    return value if isinstance(value, int) else 1


def _plain(glb: Path, compressed: bool, workdir: Path, report: Report) -> Path | None:
    """The GLB with Draco/meshopt/quantization decoded (what pxr and numpy read)."""
    plain = workdir / "plain.glb"
    try:
        optimise.decompress(glb, plain)
    except tools.ToolFailed as exc:
        if compressed:
            report.warn("USDZ_NOT_MADE", f"no USDZ: compressed geometry cannot be decoded ({exc})")
            report.stats["usdz_check"] = "not made"
            report.usdz["check"] = "not made"
            return None
        return glb
    return plain


def _make_usdz(plain: Path, workdir: Path, report: Report, anchoring: Anchoring) -> UsdzSet | None:
    names = list(report.stats.get("variants", []))
    try:
        # The anchoring is part of the file, so of its sha256 name: the same GLB with
        # another placement gets another USDZ, never the one stored for the first.
        made = convert_all(plain, workdir / "usdz", anchoring, names)
    except UsdzFailed as exc:
        report.warn("USDZ_NOT_MADE", f"no USDZ for Quick Look: {exc}")
        report.stats["usdz_check"] = "not made"
        report.usdz["check"] = "not made"
        return None
    result = made.default
    for w in result.checker_warnings:
        report.add("warning", "USDZ_CHECK_WARNING", w, source="usd")
    if result.checker_errors:
        for e in result.checker_errors:
            report.add("warning", "USDZ_CHECK_ERROR", e, source="usd")
        report.warn("USDZ_NOT_SERVED", "the USDZ failed the USD checks; no Quick Look file")
        report.stats["usdz_check"] = f"failed ({len(result.checker_errors)} errors)"
        report.usdz["check"] = report.stats["usdz_check"]
        return None
    usdz_section(report, made)
    report.stats["usdz_anchoring"] = anchoring.label
    report.stats["usdz_bytes"] = result.path.stat().st_size
    return made
