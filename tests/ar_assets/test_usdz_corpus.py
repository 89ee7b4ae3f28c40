"""Corpus (issue #15, slow): generated and shared models through ``PUT /v1/products/{id}/ar``.

For every model the USDZ the route serves is read with usd-core and compared
with what the glTF asks for, computed here from the glTF JSON (texture
transforms, vertex colours, textures per material, variants) and from vertices
put in world space by trimesh or by the generator (sizes). Shared models skip
cleanly without ../shared/data/ar.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trimesh
from fastapi.testclient import TestClient
from pxr import Usd, UsdGeom, UsdShade

from shoplens.ar_assets.gltf import parse_json, split_glb

from . import fidelity_models as fm
from .conftest import upload
from .models import box_glb, variants_glb
from .test_fidelity import fetch, meshes, world_bounds

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("node_tools")]

SHARED_AR = Path(__file__).resolve().parents[3] / "shared" / "data" / "ar"
# Shared models (the valid ones) and the placement they are uploaded with.
SHARED = {
    "AntiqueCamera.glb": "floor",
    "BoomBox.glb": "table",
    "ChessBoard.glb": "table",  # Draco: sizes from the accessor-free decode only
    "SheenChair.glb": "floor",  # variants, texture transforms, sheen
    "SunglassesKhronos.glb": "face",
    "WaterBottle.glb": "table",
    "MaterialsVariantsShoe": "foot",  # a zipped multi-file glTF with 3 variants
}


def generated() -> dict[str, tuple[bytes, str, np.ndarray | None]]:
    """name -> (upload bytes, file name, world-space vertices or None for trimesh's)."""
    skinned, skinned_world = fm.skinned_glb()
    ball, ball_world = fm.rotated_sphere_glb()
    return {
        "box": (box_glb(), "box.glb", None),
        "quantized": (fm.quantized_glb(), "q.glb", fm.box_arrays()["P"].astype(float)),
        "texture-transform": (fm.texture_transform_glb(), "tt.glb", None),
        "vertex-colour": (fm.vertex_colour_glb(), "vc.glb", None),
        "variants": (variants_glb(), "v.glb", None),
        "skinned": (skinned, "s.glb", skinned_world),
        "rotated": (ball, "r.glb", ball_world),
        "zip-in-glb": (fm.glb_in_zip(fm.texture_transform_glb()), "z.zip", None),
        "data-uri": (fm.data_uri_gltf(), "d.gltf", None),
        "ktx2-etc1s": (fm.ktx2_glb(fm.ETC1S_KTX2), "k.glb", None),
        "ktx2-uastc": (fm.ktx2_glb(fm.UASTC_KTX2), "u.glb", None),
        "spec-gloss": (fm.spec_gloss_glb(), "sg.glb", None),
    }


def _zip_folder(folder: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(folder.iterdir()):
            z.write(f, f"{folder.name}/{f.name}")
    return buf.getvalue()


def _gltf_doc(served_glb: bytes) -> dict[str, Any]:
    return parse_json(split_glb(served_glb)[0])


def _expected_textures(doc: dict[str, Any], index: int) -> int:
    """UsdUVTexture nodes material ``index`` needs (metal/rough counts twice: two channels)."""
    m = (doc.get("materials") or [])[index]
    pbr = m.get("pbrMetallicRoughness") or {}
    n = int("baseColorTexture" in pbr) + 2 * int("metallicRoughnessTexture" in pbr)
    n += int("normalTexture" in m) + int("occlusionTexture" in m)
    strength = (m.get("extensions") or {}).get("KHR_materials_emissive_strength") or {}
    emissive = [v * strength.get("emissiveStrength", 1.0) for v in m.get("emissiveFactor", [0])]
    n += int("emissiveTexture" in m and any(emissive))
    return n


def _transforms(doc: dict[str, Any], index: int) -> int:
    text = json.dumps((doc.get("materials") or [])[index])
    return text.count('"KHR_texture_transform"')


def _world_vertices(served_glb: bytes) -> np.ndarray | None:
    doc = _gltf_doc(served_glb)
    if "KHR_draco_mesh_compression" in (doc.get("extensionsUsed") or []):
        return None  # trimesh cannot decode Draco
    scene = trimesh.load(io.BytesIO(served_glb), file_type="glb", force="scene")
    pts = [g.vertices for g in scene.dump()]  # every instance, in world space
    return np.concatenate(pts) if pts else None


def _check(c: TestClient, pid: str, block: dict[str, Any], world: Any, tmp: Path) -> None:
    served = fetch(c, block["glb_url"], tmp / f"{pid}.glb").read_bytes()
    doc = _gltf_doc(served)
    assert block["usdz_url"], block["report"]["warnings"]
    stage = Usd.Stage.Open(str(fetch(c, block["usdz_url"], tmp / f"{pid}.usdz")))
    shaders = [UsdShade.Shader(p) for p in stage.Traverse() if p.IsA(UsdShade.Shader)]
    ids = [s.GetIdAttr().Get() for s in shaders]
    # Texture coordinates: no raw quantized integers (0...4095) anywhere.
    for mesh in meshes(stage):
        for pv in UsdGeom.PrimvarsAPI(mesh).GetPrimvars():
            if pv.GetTypeName() == "texCoord2f[]":
                st = np.array(pv.Get())
                assert np.isfinite(st).all() and np.abs(st).max() < 64, (pid, pv.GetName())
    # Per material: as many textures and transforms as the glTF has (none lost).
    lost = block["report"]["usdz"]["lost"]
    for mat in (UsdShade.Material(p) for p in stage.Traverse() if p.IsA(UsdShade.Material)):
        index = int(mat.GetPrim().GetName().split("_")[1])
        kids = [UsdShade.Shader(k) for k in mat.GetPrim().GetChildren()]
        kinds = [k.GetIdAttr().Get() for k in kids]
        if not lost:
            assert kinds.count("UsdUVTexture") == _expected_textures(doc, index), (pid, index)
        # Transforms are baked into st or become UsdTransform2d nodes, never invented.
        assert kinds.count("UsdTransform2d") <= _transforms(doc, index), (pid, index)
    # Vertex colours: every COLOR_0 primitive has a displayColor primvar.
    colour_prims = sum(
        "COLOR_0" in (p.get("attributes") or {})
        for m in doc.get("meshes", [])
        for p in m.get("primitives", [])
    )
    shown = sum(bool(m.GetDisplayColorPrimvar().HasAuthoredValue()) for m in meshes(stage))
    if colour_prims:
        assert shown >= 1, pid
    # Variants: one USDZ each.
    names = [v["name"] for v in block["variants"] if v["source"] == "KHR_materials_variants"]
    ext = (doc.get("extensions") or {}).get("KHR_materials_variants") or {}
    assert len(names) == len(ext.get("variants", []))
    assert all(v["usdz_url"] for v in block["variants"])
    # Sizes: the block's and the USDZ's against independent world-space vertices.
    if world is None:
        world = _world_vertices(served)
    if world is not None:
        dims = world.max(0) - world.min(0)
        got = np.array([block["dimensions_m"][k] for k in "xyz"])
        assert got == pytest.approx(dims, rel=0.01, abs=2e-3), pid
        lo, hi = world_bounds(stage)
        assert hi - lo == pytest.approx(dims, rel=0.01, abs=2e-3), pid
    assert "UsdPreviewSurface" in ids
    assert block["mobile_bytes"] <= block["bytes"]


def test_generated_corpus(client: TestClient, tmp_path: Path) -> None:
    for name, (data, filename, world) in generated().items():
        r = upload(client, name, data, filename)
        assert r.status_code == 201, (name, r.text)
        _check(client, name, r.json(), world, tmp_path)


@pytest.mark.shared
@pytest.mark.parametrize("name", sorted(SHARED))
def test_shared_corpus(client: TestClient, ar_data_dir: Path, tmp_path: Path, name: str) -> None:
    src = ar_data_dir / name
    data = _zip_folder(src) if src.is_dir() else src.read_bytes()
    filename = f"{name}.zip" if src.is_dir() else name
    r = upload(client, "shared", data, filename, placement=SHARED[name])
    assert r.status_code == 201, r.text
    block = r.json()
    assert block["bytes"] > 0 and block["mobile_bytes"] <= max(block["bytes"], len(data))
    _check(client, "shared", block, None, tmp_path)
