"""USDZ fidelity (issue #15): one test per defect, through the real upload route.

Each model is generated (``fidelity_models.py``); the USDZ the route stores is
fetched over HTTP and read with usd-core, and sizes are checked against
world-space vertices computed here with numpy/trimesh, not by the code under test.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pxr import Usd, UsdGeom, UsdShade
from pydantic import SecretStr

from shoplens.ar_assets.gltf import parse_json, split_glb
from shoplens.config import Settings

from . import fidelity_models as fm
from .conftest import TOKEN, make_app, upload
from .models import variants_glb

pytestmark = pytest.mark.usefixtures("node_tools")


def put(c: TestClient, pid: str, data: bytes, name: str = "model.glb", **form: str) -> Any:
    r = upload(c, pid, data, name, **form)
    assert r.status_code == 201, r.text
    return r.json()


def fetch(c: TestClient, url: str, dest: Path) -> Path:
    r = c.get(url.removeprefix("http://testserver"))
    assert r.status_code == 200
    dest.write_bytes(r.content)
    return dest


def open_usdz(c: TestClient, url: str, tmp: Path) -> Usd.Stage:
    return Usd.Stage.Open(str(fetch(c, url, tmp / url.rsplit("/", 1)[-1])))


def meshes(stage: Usd.Stage) -> list[UsdGeom.Mesh]:
    return [UsdGeom.Mesh(p) for p in stage.Traverse() if p.IsA(UsdGeom.Mesh)]


def surface(mesh: UsdGeom.Mesh) -> UsdShade.Shader:
    mat, _ = UsdShade.MaterialBindingAPI(mesh).ComputeBoundMaterial()
    return mat.ComputeSurfaceSource()[0]


def source(inp: UsdShade.Input) -> UsdShade.Shader | None:
    src = inp.GetConnectedSource()
    return UsdShade.Shader(src[0].GetPrim()) if src else None


def shown_st(mesh: UsdGeom.Mesh) -> np.ndarray:
    """The st the base colour texture is sampled at: the primvar, through any UsdTransform2d."""
    tex = source(surface(mesh).GetInput("diffuseColor"))
    assert tex is not None and tex.GetIdAttr().Get() == "UsdUVTexture"
    node = source(tex.GetInput("st"))
    assert node is not None
    xf = None
    if node.GetIdAttr().Get() == "UsdTransform2d":
        xf, node = node, source(node.GetInput("in"))
        assert node is not None
    assert node.GetIdAttr().Get() == "UsdPrimvarReader_float2"
    name = node.GetInput("varname").Get()
    st = np.array(UsdGeom.PrimvarsAPI(mesh).GetPrimvar(name).Get(), np.float64)
    if xf is not None:  # UsdTransform2d: scale, rotate counter-clockwise, translate
        s = np.array(xf.GetInput("scale").Get(), np.float64)
        r = math.radians(xf.GetInput("rotation").Get())
        t = np.array(xf.GetInput("translation").Get(), np.float64)
        rot = np.array([[math.cos(r), -math.sin(r)], [math.sin(r), math.cos(r)]])
        st = (st * s) @ rot.T + t
    return st


def world_bounds(stage: Usd.Stage) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of every mesh point in world space (a transformed extent box would overstate)."""
    pts = []
    for mesh in meshes(stage):
        m = np.array(mesh.ComputeLocalToWorldTransform(Usd.TimeCode.Default()))
        p = np.array(mesh.GetPointsAttr().Get(), np.float64)
        pts.append((np.c_[p, np.ones(len(p))] @ m)[:, :3])  # USD matrices act on rows
    allp = np.concatenate(pts)
    return allp.min(0), allp.max(0)


def dims_of(world: np.ndarray) -> dict[str, float]:
    return dict(zip("xyz", (world.max(0) - world.min(0)).tolist(), strict=True))


def expected_st() -> np.ndarray:
    uv = fm.box_arrays()["T"].astype(np.float64)
    t = fm.TRANSFORM
    c, s = math.cos(t["rotation"]), math.sin(t["rotation"])
    # glTF: T * R * S applied to (u, v), R = [[c, s], [-s, c]] (KHR_texture_transform).
    scaled = uv * np.array(t["scale"])
    moved = scaled @ np.array([[c, s], [-s, c]]).T + np.array(t["offset"])
    return np.c_[moved[:, 0], 1.0 - moved[:, 1]]  # USD st runs up


def test_texture_transform_is_baked_into_the_coordinates(
    client: TestClient, tmp_path: Path
) -> None:
    block = put(client, "tt", fm.texture_transform_glb())
    stage = open_usdz(client, block["usdz_url"], tmp_path)
    (mesh,) = meshes(stage)
    assert shown_st(mesh) == pytest.approx(expected_st(), abs=1e-5)
    assert "KHR_texture_transform" not in json.dumps(block["report"]["usdz"])


def test_texture_transforms_differing_per_texture_become_transform2d_nodes(
    client: TestClient, tmp_path: Path
) -> None:
    block = put(client, "tt2", fm.texture_transform_glb({"scale": [5.0, 5.0]}))
    stage = open_usdz(client, block["usdz_url"], tmp_path)
    (mesh,) = meshes(stage)
    ids = [UsdShade.Shader(p).GetIdAttr().Get() for p in stage.Traverse()]
    assert ids.count("UsdTransform2d") == 2  # base colour and normal map, one each
    assert shown_st(mesh) == pytest.approx(expected_st(), abs=1e-5)


def test_quantized_model_gets_unit_uvs_and_true_size(client: TestClient, tmp_path: Path) -> None:
    block = put(client, "quant", fm.quantized_glb())
    stage = open_usdz(client, block["usdz_url"], tmp_path)
    (mesh,) = meshes(stage)
    st = shown_st(mesh)
    assert st.min() >= -1e-4 and st.max() <= 1 + 1e-4  # not 0...4095
    assert block["dimensions_m"] == pytest.approx({"x": 0.3, "y": 0.3, "z": 0.3}, abs=1e-3)
    lo, hi = world_bounds(stage)
    assert hi - lo == pytest.approx([0.3, 0.3, 0.3], abs=1e-3)


def test_vertex_colours_reach_the_usdz(client: TestClient, tmp_path: Path) -> None:
    block = put(client, "vc", fm.vertex_colour_glb())
    stage = open_usdz(client, block["usdz_url"], tmp_path)
    (mesh,) = meshes(stage)
    colours = np.array(mesh.GetDisplayColorPrimvar().Get())
    assert colours == pytest.approx(np.repeat(fm.FACE_COLOURS, 4, axis=0))
    reader = source(surface(mesh).GetInput("diffuseColor"))
    assert reader is not None and reader.GetIdAttr().Get() == "UsdPrimvarReader_float3"
    assert reader.GetInput("varname").Get() == "displayColor"
    assert block["usdz_degraded"] is False


def test_ktx2_texture_is_transcoded_into_the_usdz(client: TestClient, tmp_path: Path) -> None:
    block = put(client, "ktx", fm.ktx2_glb(fm.ktx2_image(tmp_path)))
    stage = open_usdz(client, block["usdz_url"], tmp_path)
    (mesh,) = meshes(stage)
    tex = source(surface(mesh).GetInput("diffuseColor"))
    assert tex is not None and str(tex.GetInput("file").Get().path).endswith(".png")
    assert block["usdz_degraded"] is False
    assert block["report"]["usdz"]["lost"] == []


def test_lost_texture_flags_the_usdz_degraded(client: TestClient, tmp_path: Path) -> None:
    """A KTX2 the transcoder cannot read: the USDZ is served, but flagged, not 'passed'."""
    image = bytearray(fm.ktx2_image(tmp_path))
    image[12:16] = (23).to_bytes(4, "little")  # vkFormat R8G8B8_UNORM: neither path reads it
    r = upload(client, "ktx-bad", fm.ktx2_glb(bytes(image)))
    if r.status_code == 422:
        pytest.skip("the Khronos validator refuses this KTX2 outright")
    block = r.json()
    assert block["usdz_degraded"] is True
    usdz = block["report"]["usdz"]
    assert usdz["degraded"] is True and usdz["check"].startswith("degraded")
    assert any("material 0" in line and "KTX2" in line for line in usdz["lost"])
    page = client.get("/ar/view/ktx-bad")
    assert 'data-usdz-degraded="true"' in page.text
    assert 'id="usdz-degraded"' in page.text


def test_each_material_variant_has_its_own_usdz(client: TestClient, tmp_path: Path) -> None:
    block = put(client, "shoe", variants_glb())
    entries = {v["name"]: v for v in block["variants"]}
    assert set(entries) == {"Blue", "Red"}
    urls = {n: e["usdz_url"] for n, e in entries.items()}
    assert None not in urls.values()
    assert urls["Blue"] != urls["Red"]
    # Blue maps every primitive to its default material: the default USDZ, same bytes.
    assert urls["Blue"] == block["usdz_url"]
    red_stage = open_usdz(client, urls["Red"], tmp_path)  # kept alive while reading prims
    red = meshes(red_stage)[0]
    diffuse = surface(red).GetInput("diffuseColor")
    assert not diffuse.HasConnectedSource() and tuple(diffuse.Get()) == (1, 0, 0)
    blue_stage = open_usdz(client, urls["Blue"], tmp_path)
    blue = meshes(blue_stage)[0]
    assert surface(blue).GetInput("diffuseColor").HasConnectedSource()  # the texture
    # The same in GET, and the viewer hands Quick Look the variant's file.
    got = client.get("/v1/products/shoe/ar").json()
    assert {v["name"]: v["usdz_url"] for v in got["variants"]} == urls
    page = client.get("/ar/view/shoe?material_variant=Red").text
    assert f'ios-src="{urls["Red"]}"' in page


def test_skinned_model_is_measured_and_placed_in_its_rest_pose(
    client: TestClient, tmp_path: Path
) -> None:
    data, world = fm.skinned_glb()
    block = put(client, "fox", data)
    assert block["dimensions_m"] == pytest.approx(dims_of(world), abs=1e-3)  # not 30 m
    stage = open_usdz(client, block["usdz_url"], tmp_path)
    lo, hi = world_bounds(stage)
    assert hi - lo == pytest.approx(world.max(0) - world.min(0), abs=1e-3)
    assert lo[1] == pytest.approx(0.0, abs=1e-4)  # on the floor, not 0.1 m inside it
    (mesh,) = meshes(stage)  # its normals turned by the joints like its points
    normals = np.array(mesh.GetNormalsAttr().Get(), np.float64)
    assert normals == pytest.approx(fm.box_arrays(30.0)["N"] @ fm.SKIN_TURN.T, abs=1e-5)


def test_rotated_parts_are_measured_on_their_vertices(client: TestClient, tmp_path: Path) -> None:
    data, world = fm.rotated_sphere_glb()
    block = put(client, "ball", data)
    assert block["dimensions_m"] == pytest.approx(dims_of(world), abs=1e-3)
    lo, hi = world_bounds(open_usdz(client, block["usdz_url"], tmp_path))
    assert hi - lo == pytest.approx(world.max(0) - world.min(0), abs=1e-3)


def test_glb_inside_a_zip_is_accepted(client: TestClient) -> None:
    data = fm.texture_transform_glb()
    block = put(client, "zipped-glb", fm.glb_in_zip(data), "chair.zip")
    served = client.get(block["glb_url"].removeprefix("http://testserver")).content
    assert served == data
    assert block["usdz_url"]


def test_self_contained_gltf_is_accepted_as_is(client: TestClient) -> None:
    block = put(client, "data-uri", fm.data_uri_gltf(), "model.gltf")
    assert block["dimensions_m"] == pytest.approx({"x": 0.3, "y": 0.3, "z": 0.3}, abs=1e-3)
    assert block["usdz_url"]


def test_gltf_alone_with_external_files_is_refused(client: TestClient) -> None:
    doc = json.loads(fm.data_uri_gltf())
    doc["buffers"][0]["uri"] = "model.bin"
    r = upload(client, "ext-uri", json.dumps(doc).encode(), "model.gltf")
    assert r.status_code == 422
    codes = [e["code"] for e in r.json()["report"]["errors"]]
    assert codes == ["GLTF_NOT_SELF_CONTAINED"]
    assert client.get("/v1/products/ext-uri/ar").status_code == 404


def test_spec_gloss_model_is_converted_to_metal_rough(client: TestClient) -> None:
    block = put(client, "specgloss", fm.spec_gloss_glb())
    served = client.get(block["glb_url"].removeprefix("http://testserver")).content
    doc = parse_json(split_glb(served)[0])
    assert "KHR_materials_pbrSpecularGlossiness" not in json.dumps(doc)
    assert "SPEC_GLOSS_CONVERTED" in {i["code"] for i in block["report"]["infos"]}


def test_usdz_bytes_and_name_are_stable_across_data_dirs(
    client: TestClient, tmp_path: Path
) -> None:
    data = fm.texture_transform_glb()
    first = put(client, "stable", data)
    other = Settings(data_dir=tmp_path / "elsewhere", admin_token=SecretStr(TOKEN))
    with TestClient(make_app(other)) as c2:
        second = put(c2, "stable", data)
        body = fetch(c2, second["usdz_url"], tmp_path / "second.usdz").read_bytes()
    assert first["usdz_url"] == second["usdz_url"]
    assert fetch(client, first["usdz_url"], tmp_path / "first.usdz").read_bytes() == body
    ar = client.app.state.ar  # type: ignore[attr-defined]
    old = ar.store.get("stable", "default")
    rebuilt, _ = ar.reconvert(old)  # what `shoplens ar reconvert` runs
    assert rebuilt.usdz_sha == old.usdz_sha
    with zipfile.ZipFile(tmp_path / "first.usdz") as z:
        assert {i.date_time for i in z.infolist()} == {(1980, 1, 1, 0, 0, 0)}  # no upload time


def test_mobile_variant_has_no_gpu_instancing(client: TestClient) -> None:
    block = put(client, "chairs", fm.instanced_glb())
    assert block["glb_mobile_url"] != block["glb_url"]  # a variant was made
    mobile = client.get(block["glb_mobile_url"].removeprefix("http://testserver")).content
    assert b"EXT_mesh_gpu_instancing" not in split_glb(mobile)[0]
    assert block["mobile_bytes"] <= block["bytes"]


def test_draco_upload_gets_a_draco_mobile_variant_smaller_than_it(
    client: TestClient, tmp_path: Path
) -> None:
    data = fm.draco_glb(tmp_path)
    block = put(client, "draco", data)
    assert block["glb_mobile_url"] != block["glb_url"]  # a variant was made...
    assert block["mobile_bytes"] < len(data)  # ...smaller than the file sent
    mobile = client.get(block["glb_mobile_url"].removeprefix("http://testserver")).content
    assert b"KHR_draco_mesh_compression" in split_glb(mobile)[0]


@pytest.mark.parametrize("codec", ["ETC1S", "UASTC"])
def test_basisu_texture_is_transcoded_with_its_pixels(
    client: TestClient, tmp_path: Path, codec: str
) -> None:
    image = fm.ETC1S_KTX2 if codec == "ETC1S" else fm.UASTC_KTX2
    block = put(client, f"basis-{codec.lower()}", fm.ktx2_glb(image))
    assert block["usdz_degraded"] is False
    path = fetch(client, block["usdz_url"], tmp_path / "m.usdz")
    with zipfile.ZipFile(path) as z:
        (png,) = [n for n in z.namelist() if n.endswith(".png")]
        with Image.open(io.BytesIO(z.read(png))) as im:
            rgb = im.convert("RGB")
            assert rgb.size == (16, 16)
            assert rgb.getpixel((0, 0)) == pytest.approx(fm.CHECKER_BLUE, abs=8)
            assert rgb.getpixel((5, 0)) == pytest.approx(fm.CHECKER_RED, abs=8)
