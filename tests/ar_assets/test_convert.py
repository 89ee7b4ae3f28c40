"""USDZ conversion and Draco input, on generated models (`shoplens ar add`: test_orphans.py)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from pxr import Usd, UsdGeom, UsdShade

from shoplens.ar_assets import tools, usdz
from shoplens.ar_assets.anchoring import HORIZONTAL_PLANE
from shoplens.ar_assets.service import ArService
from shoplens.config import Settings

from .models import box_glb, checker_png

pytestmark = pytest.mark.usefixtures("node_tools")


def test_usdz_structure_and_checker(tmp_path: Path) -> None:
    src = tmp_path / "box.glb"
    src.write_bytes(box_glb(texture=checker_png(64, "WEBP"), tex_mime="image/webp"))
    out = tmp_path / "box.usdz"
    result = usdz.convert(src, out, tmp_path / "work", anchoring=HORIZONTAL_PLANE)
    assert result.checker_errors == []
    assert usdz.check(out)[0] == []
    names = zipfile.ZipFile(out).namelist()
    assert names[0].endswith(".usdc")
    assert any(n.endswith(".png") for n in names)  # WebP converted to PNG
    stage = Usd.Stage.Open(str(out))
    assert UsdGeom.GetStageMetersPerUnit(stage) == 1.0
    assert UsdGeom.GetStageUpAxis(stage) == UsdGeom.Tokens.y
    assert stage.GetDefaultPrim().GetName() == "Root"
    meshes = [UsdGeom.Mesh(p) for p in stage.Traverse() if p.IsA(UsdGeom.Mesh)]
    assert len(meshes) == 1
    mesh = meshes[0]
    assert len(mesh.GetFaceVertexCountsAttr().Get()) == 12
    pts = mesh.GetPointsAttr().Get()
    assert min(p[1] for p in pts) == pytest.approx(0.0)
    assert max(p[1] for p in pts) == pytest.approx(0.3)
    st = UsdGeom.PrimvarsAPI(mesh).GetPrimvar("st").Get()
    assert len(st) == len(pts)
    assert len(mesh.GetNormalsAttr().Get()) == len(pts)
    mat, _ = UsdShade.MaterialBindingAPI(mesh).ComputeBoundMaterial()
    surface = mat.ComputeSurfaceSource()[0]
    assert surface.GetIdAttr().Get() == "UsdPreviewSurface"
    assert surface.GetInput("diffuseColor").HasConnectedSource()


def test_uv_v_is_flipped(tmp_path: Path) -> None:
    src = tmp_path / "box.glb"
    src.write_bytes(box_glb())
    out = tmp_path / "box.usdz"
    usdz.convert(src, out, tmp_path / "work", anchoring=HORIZONTAL_PLANE)
    stage = Usd.Stage.Open(str(out))  # keep the stage alive while reading its prims
    mesh = next(UsdGeom.Mesh(p) for p in stage.Traverse() if p.IsA(UsdGeom.Mesh))
    st = UsdGeom.PrimvarsAPI(mesh).GetPrimvar("st").Get()
    # glTF uv (0, 1) at the first corner becomes st (0, 0).
    assert tuple(st[0]) == pytest.approx((0.0, 0.0))


def test_draco_upload_gets_usdz_and_dimensions(tmp_path: Path) -> None:
    src = tmp_path / "box.glb"
    src.write_bytes(box_glb(size=0.5))
    draco = tmp_path / "draco.glb"
    tools.gltf_transform(["draco", str(src), str(draco)])
    head = draco.read_bytes()[:4000]
    assert b"KHR_draco_mesh_compression" in head
    ar = ArService.open(Settings(data_dir=tmp_path / "data"))
    row, report = ar.ingest("draco-box", draco)
    assert report.ok
    assert row.dims == {"x": 0.5, "y": 0.5, "z": 0.5}
    assert row.triangles == 12
    assert row.usdz_sha is not None
    assert report.stats["usdz_check"].startswith("passed")


def test_meshopt_upload_is_accepted(tmp_path: Path) -> None:
    src = tmp_path / "box.glb"
    src.write_bytes(box_glb(size=0.5))
    packed = tmp_path / "meshopt.glb"
    tools.gltf_transform(["meshopt", str(src), str(packed)])
    assert b"EXT_meshopt_compression" in packed.read_bytes()[:4000]
    ar = ArService.open(Settings(data_dir=tmp_path / "data"))
    row, report = ar.ingest("meshopt-box", packed)
    assert report.ok, report.errors
    assert row.dims == {"x": 0.5, "y": 0.5, "z": 0.5}
    assert row.usdz_sha is not None


def test_without_node_tools_uploads_still_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from .models import gltf_zip

    monkeypatch.setattr(tools, "find_tools", lambda: tools.NodeTools(None, None))
    ar = ArService.open(Settings(data_dir=tmp_path / "data"))
    up = tmp_path / "m.zip"
    up.write_bytes(gltf_zip())
    row, report = ar.ingest("no-node", up)
    assert report.ok
    assert report.khronos_validator.startswith("unavailable")
    assert row.mobile_sha == row.glb_sha  # no optimiser: phones get the original
    # ...and the report says so as warnings, not as infos nobody reads.
    assert {"KHRONOS_VALIDATOR_UNAVAILABLE", "MOBILE_NOT_MADE"} <= {w.code for w in report.warnings}
    assert row.usdz_sha is not None
    packed = ar.file_path(f"{row.glb_sha}.glb")[0]
    from shoplens.ar_assets.validation.checks import validate

    assert validate(packed, "floor", packed.stat().st_size, khronos=False).report.ok
    monkeypatch.undo()
    from shoplens.ar_assets.report import Report
    from shoplens.ar_assets.validation.khronos import run_khronos

    check = Report()
    if run_khronos(packed, check) is not None:
        assert check.ok, check.errors  # the pure-Python packer writes a valid GLB
