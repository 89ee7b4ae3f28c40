"""One plain GLB -> one USDZ for iOS Quick Look, with usd-core (pxr).

Reads a *plain* GLB (Draco/meshopt already decoded by ``optimise.decompress``),
builds the stage (``geometry``, ``materials``, ``textures``) with the AR Quick
Look anchoring of the product's placement (``anchoring.py``) on the root prim,
stands floor and table items on y = 0 from their world-space vertex bounds, then
packages it as a USDZ (root layer first, 64-byte aligned, uncompressed) and
runs every registered USD validator on it.

The bytes depend only on the GLB and the arguments: the layer and textures are
written in a fixed order under fixed names and the zip entries carry one fixed
date, so the same upload gives the same USDZ, and name, in any data dir and
after ``shoplens ar reconvert``.
"""

from __future__ import annotations

import logging
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from pxr import Sdf, Usd, UsdGeom, UsdValidation

from shoplens.ar_assets.anchoring import Anchoring
from shoplens.ar_assets.gltf import (
    Gltf,
    GltfFormatError,
    parse_json,
    scene_roots,
    split_glb,
    world_bounds,
)
from shoplens.ar_assets.usdz.geometry import Geometry
from shoplens.ar_assets.usdz.materials import Materials, Notes
from shoplens.ar_assets.usdz.textures import Textures

log = logging.getLogger(__name__)
FLOOR_EPSILON_M = 1e-4
FIXED_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest zip date: no time in the bytes


@dataclass
class UsdzResult:
    path: Path
    checker_errors: list[str] = field(default_factory=list)
    checker_warnings: list[str] = field(default_factory=list)
    approximated: list[str] = field(default_factory=list)  # shown, but not exactly
    lost: list[str] = field(default_factory=list)  # textures or colours not shown at all

    @property
    def degraded(self) -> bool:
        """Quick Look shows less than the glTF has (a texture or colours were lost)."""
        return bool(self.lost)

    @property
    def notes(self) -> list[str]:
        return [*self.approximated, *self.lost]


class UsdzFailed(Exception):
    pass


def read_glb(path: Path) -> Gltf:
    json_chunk, bin_chunk = split_glb(path.read_bytes())
    g = Gltf(parse_json(json_chunk))
    g.buffers = [bin_chunk if i == 0 else None for i, _ in enumerate(g.items("buffers"))]
    return g


ANCHORING_API = "Preliminary_AnchoringAPI"
ANCHORING_TYPE = "preliminary:anchoring:type"
PLANE_ALIGNMENT = "preliminary:planeAnchoring:alignment"
WALL_MOUNT = "WallMount"


def _anchor(stage: Usd.Stage, root: UsdGeom.Xform, anchoring: Anchoring) -> Sdf.Path:
    """Author ``anchoring`` on the root prim; returns the prim the scene goes under.

    Written as Reality Composer writes it (Apple's "USDZ schemas for AR" pages show
    ``prepend apiSchemas = ["Preliminary_AnchoringAPI"]`` and ``uniform token``
    attributes). Nothing is registered with usd-core: pxr keeps an unknown API
    schema name in the prim's apiSchemas list op and its type info (only
    ``GetAppliedSchemas()`` leaves it out), and every UsdValidation validator
    passes; AR Quick Look, which knows the schema, reads it.

    A plane anchor puts the anchored prim's +Y along the surface normal (Apple:
    "the top of the anchor as its normal vector points"), so on a wall an upright
    glTF model (+Y up, front +Z) would stand out of the wall; model-viewer's
    Quick Look wall work found the same 90 degree turn
    (github.com/google/model-viewer/issues/3989, pull/4030). The scene therefore
    goes under /Root/WallMount, turned -90 degrees about X (front -> normal,
    up -> anchor -Z), and /Root gets the opposite +90. In AR the anchor, not the
    anchored prim's own transform, places /Root; viewers without AR apply that
    transform (Apple: studio mode "displays a prim by applying its transform"), so
    there, and in usdview, both turns cancel and the model shows as uploaded.
    Not yet checked on an iPhone: the orientation rests on the sources above.
    """
    prim = root.GetPrim()
    prim.AddAppliedSchema(ANCHORING_API)  # prepend, as Reality Composer writes it
    uniform = Sdf.VariabilityUniform
    token = Sdf.ValueTypeNames.Token
    prim.CreateAttribute(ANCHORING_TYPE, token, False, uniform).Set(anchoring.type)
    if anchoring.alignment is not None:
        prim.CreateAttribute(PLANE_ALIGNMENT, token, False, uniform).Set(anchoring.alignment)
    if anchoring.alignment != "vertical":
        return root.GetPath()
    root.AddRotateXOp().Set(90.0)
    mount = UsdGeom.Xform.Define(stage, root.GetPath().AppendChild(WALL_MOUNT))
    mount.AddRotateXOp().Set(-90.0)
    return mount.GetPath()


def _floor_offset(g: Gltf, anchoring: Anchoring) -> float:
    """How far to lift the scene so that it stands on y = 0 (horizontal planes only).

    Quick Look puts the anchored prim's origin on the plane: a model whose
    lowest vertex is below its origin (a rigged character in its rest pose)
    would sink into the floor, one above it would float.
    """
    if anchoring.alignment != "horizontal":
        return 0.0
    try:
        bounds = world_bounds(g)
    except (GltfFormatError, ValueError, IndexError, KeyError, TypeError):
        return 0.0
    if bounds is None or abs(float(bounds[0][1])) < FLOOR_EPSILON_M:
        return 0.0
    return -float(bounds[0][1])


def _build(
    g: Gltf, workdir: Path, textures: bool, anchoring: Anchoring, variant: int | None
) -> tuple[Path, Notes]:
    workdir.mkdir(parents=True, exist_ok=True)
    layer = workdir / "model.usdc"
    stage = Usd.Stage.CreateNew(str(layer))
    UsdGeom.SetStageMetersPerUnit(stage, 1.0)
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.y)
    root = UsdGeom.Xform.Define(stage, "/Root")
    Usd.ModelAPI(root.GetPrim()).SetKind("component")
    stage.SetDefaultPrim(root.GetPrim())
    scope = UsdGeom.Scope.Define(stage, "/Root/Materials").GetPath()
    parent = _anchor(stage, root, anchoring)
    lift = _floor_offset(g, anchoring)
    if lift:
        on_floor = UsdGeom.Xform.Define(stage, parent.AppendChild("OnFloor"))
        on_floor.AddTranslateOp().Set((0.0, lift, 0.0))
        parent = on_floor.GetPath()
    tex = Textures(g, workdir)
    mats = Materials(g, stage, tex, textures)
    geo = Geometry(g, stage, mats, variant)
    seen: set[int] = set()
    for r in scene_roots(g):
        geo.node(parent, r, scope, seen, parent)
    stage.GetRootLayer().Save()
    notes = Notes(
        approximated=sorted(set(mats.notes.approximated + tex.approximated + geo.skipped)),
        lost=sorted(set(tex.lost)),
    )
    if lift:
        notes.approximated.append(f"moved {lift:+.3f} m up to stand on the floor (y = 0)")
    return layer, notes


def _package(layer: Path, out: Path) -> bool:
    """Write the USDZ: the root layer first, then the textures beside it.

    A USDZ is a zip with stored (uncompressed) entries whose data start on
    64-byte boundaries. ``Sdf.ZipFileWriter`` writes that, but stamps every
    entry with the current time, so the same model gave other bytes, so another
    sha256 name, each second. Python's zipfile writes the same layout with a
    fixed date; the alignment padding goes in an extra field (id 0x1986, as
    usd-core pads). The USD validators (UsdzPackageValidator among them)
    check the result.
    """
    files = [layer, *sorted(p for p in layer.parent.iterdir() if p.suffix in (".png", ".jpg"))]
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for f in files:
            info = zipfile.ZipInfo(f.name, date_time=FIXED_DATE)
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            header = z.fp.tell() if z.fp is not None else 0
            data_at = header + 30 + len(f.name.encode()) + 4  # 4: the extra field's header
            pad = -data_at % 64
            info.extra = struct.pack("<HH", 0x1986, pad) + b"\0" * pad
            z.writestr(info, f.read_bytes())
    return out.is_file()


def check(usdz: Path) -> tuple[list[str], list[str]]:
    """(errors, warnings) from every registered USD validator (usd-core's UsdValidation)."""
    registry = UsdValidation.ValidationRegistry()
    validators = registry.GetOrLoadAllValidators()
    stage = Usd.Stage.Open(str(usdz))
    errors, warnings = [], []
    for e in UsdValidation.ValidationContext(validators).Validate(stage):
        text = f"{e.GetName()}: {e.GetMessage()}"
        if e.GetType() == UsdValidation.ValidationErrorType.Error:
            errors.append(text)
        elif e.GetType() == UsdValidation.ValidationErrorType.Warn:
            warnings.append(text)
    return errors, warnings


def convert(
    plain_glb: Path,
    out: Path,
    workdir: Path,
    *,
    anchoring: Anchoring,
    variant: int | None = None,
) -> UsdzResult:
    """Write ``out`` (.usdz) anchored as ``anchoring`` says, showing material ``variant``
    (a ``KHR_materials_variants`` index; None: the default materials); retried
    without textures if the first package fails the checks."""
    try:
        g = read_glb(plain_glb)
    except GltfFormatError as exc:
        raise UsdzFailed(exc.message) from exc
    attempts = [("full", True), ("untextured", False)]
    result: UsdzResult | None = None
    for label, textures in attempts:
        try:
            layer, notes = _build(g, workdir / label, textures, anchoring, variant)
            if out.exists():
                out.unlink()
            ok = _package(layer, out)
        # Tf errors are RuntimeError; the others: glTF data of a shape numpy cannot use.
        except (GltfFormatError, ValueError, RuntimeError, IndexError, KeyError, TypeError) as exc:
            log.warning("USDZ %s build failed: %s", label, exc)
            continue
        if not ok or not out.is_file():
            continue
        errors, warnings = check(out)
        result = UsdzResult(out, errors, warnings, notes.approximated, notes.lost)
        if not errors:
            if label != "full":
                result.lost.append("every texture dropped: the textured USDZ failed the USD checks")
            return result
    if result is None:
        raise UsdzFailed("usd-core could not write a USDZ package")
    return result
