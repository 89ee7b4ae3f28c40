"""AR Quick Look anchoring: placement -> Preliminary_AnchoringAPI on the USDZ's root prim,
read back with pxr from the real .usdz, and the same anchoring in the AR block and viewer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pxr import Gf, Sdf, Usd, UsdGeom

from shoplens.ar_assets import usdz
from shoplens.ar_assets.anchoring import BY_PLACEMENT, for_placement
from shoplens.ar_assets.validation.commerce import PLACEMENTS
from shoplens.config import Settings

from .conftest import upload
from .models import box_glb

# (preliminary:anchoring:type, preliminary:planeAnchoring:alignment or None, public label)
EXPECTED = {
    "floor": ("plane", "horizontal", "plane-horizontal"),
    "table": ("plane", "horizontal", "plane-horizontal"),
    "wall": ("plane", "vertical", "plane-vertical"),
    "face": ("face", None, "face"),
    "head": ("face", None, "face"),
    "wrist": ("plane", "horizontal", "plane-horizontal"),  # no body anchors in Quick Look
    "foot": ("plane", "horizontal", "plane-horizontal"),
}


def anchoring_of(path: Path) -> tuple[str, str | None]:
    """(type, alignment) authored on the default prim of a .usdz, checked to be well formed."""
    stage = Usd.Stage.Open(str(path))
    root = stage.GetDefaultPrim()
    assert root.GetPath() == Sdf.Path("/Root")
    # Authored as Reality Composer writes it: `prepend apiSchemas = [...]` on the root prim.
    spec = stage.GetRootLayer().GetPrimAtPath("/Root")
    assert list(spec.GetInfo("apiSchemas").prependedItems) == ["Preliminary_AnchoringAPI"]
    # pxr does not know the schema (GetAppliedSchemas() omits unknown names) but keeps it.
    assert "Preliminary_AnchoringAPI" in root.GetPrimTypeInfo().GetAppliedAPISchemas()
    values: list[str | None] = []
    for name in ("preliminary:anchoring:type", "preliminary:planeAnchoring:alignment"):
        attr = root.GetAttribute(name)
        if not attr.HasAuthoredValue():
            values.append(None)
            continue
        assert attr.GetTypeName() == Sdf.ValueTypeNames.Token
        assert attr.GetVariability() == Sdf.VariabilityUniform
        assert not attr.IsCustom()
        values.append(str(attr.Get()))
    kind, alignment = values
    assert kind is not None
    return kind, alignment


def world_points(path: Path) -> np.ndarray:
    stage = Usd.Stage.Open(str(path))
    mesh = next(UsdGeom.Mesh(p) for p in stage.Traverse() if p.IsA(UsdGeom.Mesh))
    to_world = mesh.ComputeLocalToWorldTransform(Usd.TimeCode.Default())
    return np.array([list(to_world.Transform(Gf.Vec3d(p))) for p in mesh.GetPointsAttr().Get()])


def test_every_placement_has_its_anchoring() -> None:
    assert set(BY_PLACEMENT) == set(PLACEMENTS) == set(EXPECTED)
    for placement, (kind, alignment, label) in EXPECTED.items():
        a = for_placement(placement)
        assert (a.type, a.alignment, a.label) == (kind, alignment, label)
    with pytest.raises(ValueError, match="ceiling"):
        for_placement("ceiling")


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, usdz.UsdzResult]]:
    """One USDZ per placement, from the same GLB."""
    tmp = tmp_path_factory.mktemp("anchoring")
    src = tmp / "box.glb"
    src.write_bytes(box_glb())
    out: dict[str, tuple[Path, usdz.UsdzResult]] = {}
    for placement in EXPECTED:
        path = tmp / f"{placement}.usdz"
        result = usdz.convert(src, path, tmp / placement, anchoring=for_placement(placement))
        out[placement] = (path, result)
    return out


@pytest.mark.parametrize("placement", list(EXPECTED))
def test_usdz_root_carries_the_anchoring(
    converted: dict[str, tuple[Path, usdz.UsdzResult]], placement: str
) -> None:
    path, result = converted[placement]
    kind, alignment, _label = EXPECTED[placement]
    assert anchoring_of(path) == (kind, alignment)
    # Every UsdValidation validator still passes, without a warning either.
    assert (result.checker_errors, result.checker_warnings) == ([], [])
    assert usdz.check(path) == ([], [])
    # Nothing else changes: units, up axis, size and position of the model.
    stage = Usd.Stage.Open(str(path))
    assert UsdGeom.GetStageMetersPerUnit(stage) == 1.0
    assert UsdGeom.GetStageUpAxis(stage) == UsdGeom.Tokens.y
    floor_points = world_points(converted["floor"][0])
    np.testing.assert_allclose(world_points(path), floor_points, atol=1e-6)
    assert floor_points[:, 1].min() == pytest.approx(0.0)
    assert floor_points[:, 1].max() == pytest.approx(0.3)


def test_wall_model_faces_out_of_the_wall(
    converted: dict[str, tuple[Path, usdz.UsdzResult]],
) -> None:
    """A plane anchor's +Y is the wall's normal: the model's front (+Z) must end up there,
    its up (+Y) along the wall, while viewers without AR still see it upright."""
    stage = Usd.Stage.Open(str(converted["wall"][0]))
    root = stage.GetDefaultPrim()
    mesh = next(p for p in stage.Traverse() if p.IsA(UsdGeom.Mesh))
    assert mesh.GetPath().HasPrefix("/Root/WallMount")
    to_anchor, _ = UsdGeom.XformCache().ComputeRelativeTransform(mesh, root)
    front = to_anchor.TransformDir(Gf.Vec3d(0, 0, 1))
    up = to_anchor.TransformDir(Gf.Vec3d(0, 1, 0))
    assert Gf.IsClose(front, Gf.Vec3d(0, 1, 0), 1e-9)
    assert Gf.IsClose(up, Gf.Vec3d(0, 0, -1), 1e-9)
    world = UsdGeom.Xformable(mesh).ComputeLocalToWorldTransform(Usd.TimeCode.Default())
    assert Gf.IsClose(world, Gf.Matrix4d(1), 1e-9)
    # Other placements keep the scene directly under /Root, untransformed.
    floor = Usd.Stage.Open(str(converted["floor"][0]))
    assert not UsdGeom.Xformable(floor.GetDefaultPrim()).GetOrderedXformOps()
    assert floor.GetPrimAtPath("/Root/Node_0").IsValid()


def _fetch_usdz(client: TestClient, block: dict[str, Any], tmp_path: Path, name: str) -> Path:
    got = client.get(block["usdz_url"])
    assert got.status_code == 200
    path = tmp_path / f"{name}.usdz"
    path.write_bytes(got.content)
    return path


@pytest.mark.usefixtures("node_tools")
def test_same_glb_with_two_placements_gives_two_usdz(client: TestClient, tmp_path: Path) -> None:
    data = box_glb()
    face = upload(client, "sku-glasses", data, placement="face").json()
    wall = upload(client, "sku-frame", data, placement="wall").json()
    assert face["glb_url"] == wall["glb_url"]  # the very same GLB ...
    assert face["usdz_url"] != wall["usdz_url"]  # ... but one USDZ per anchoring
    assert anchoring_of(_fetch_usdz(client, face, tmp_path, "face")) == ("face", None)
    assert anchoring_of(_fetch_usdz(client, wall, tmp_path, "wall")) == ("plane", "vertical")
    assert (face["anchoring"], wall["anchoring"]) == ("face", "plane-vertical")
    assert face["report"]["stats"]["usdz_anchoring"] == "face"
    assert client.get("/v1/products/sku-frame/ar").json()["anchoring"] == "plane-vertical"


@pytest.mark.usefixtures("node_tools")
def test_reupload_with_another_placement_replaces_the_usdz(
    client: TestClient, ar_settings: Settings, tmp_path: Path
) -> None:
    data = box_glb()
    first = upload(client, "sku-hat", data, placement="floor").json()
    assert anchoring_of(_fetch_usdz(client, first, tmp_path, "first")) == ("plane", "horizontal")
    second = upload(client, "sku-hat", data, placement="head").json()
    assert second["glb_url"] == first["glb_url"]
    assert second["usdz_url"] != first["usdz_url"]
    assert anchoring_of(_fetch_usdz(client, second, tmp_path, "second")) == ("face", None)
    assert second["anchoring"] == "face" and second["placement"] == "head"
    # The old USDZ is no longer referenced: collected, not served as a cached stand-in.
    assert client.get(first["usdz_url"]).status_code == 404
    assert len(list(ar_settings.assets_dir.glob("*.usdz"))) == 1
    block = client.get("/v1/products/sku-hat/ar").json()
    assert block["usdz_url"] == second["usdz_url"]


@pytest.mark.usefixtures("node_tools")
def test_block_variants_and_viewer_tell_the_anchoring(client: TestClient) -> None:
    upload(client, "sku-deco", box_glb(), placement="table")
    upload(client, "sku-deco", box_glb(size=0.4), placement="wall", variant="mounted")
    block = client.get("/v1/products/sku-deco/ar").json()
    assert block["anchoring"] == "plane-horizontal"
    assert [(v["name"], v["anchoring"]) for v in block["variants"]] == [
        ("mounted", "plane-vertical")
    ]
    html = client.get("/ar/view/sku-deco").text
    assert 'data-anchoring="plane-horizontal"' in html and 'ar-placement="floor"' in html
    html = client.get("/ar/view/sku-deco?variant=mounted").text
    assert 'data-anchoring="plane-vertical"' in html and 'ar-placement="wall"' in html
    upload(client, "sku-specs", box_glb(size=0.15), placement="face")
    html = client.get("/ar/view/sku-specs").text
    assert 'data-anchoring="face"' in html and 'ar-placement="floor"' in html
