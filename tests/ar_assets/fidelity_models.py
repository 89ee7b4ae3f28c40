"""Generated models for the USDZ fidelity tests (issue #15), built from numpy arrays.

Each returns GLB bytes plus what the test needs to check the result
independently (the expected world-space vertices, a texture transform...).
"""

from __future__ import annotations

import base64
import io
import json
import math
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import trimesh
from PIL import Image

from shoplens.ar_assets import tools

from .models import _pad, box, checker_png, glb

Doc = dict[str, Any]
KTX2_WRITER = """
import fs from "fs"; import path from "path";
const [nm, out, w, h] = process.argv.slice(2);
const ktx = await import(path.join(nm, "ktx-parse", "dist", "ktx-parse.modern.js"));
const c = ktx.createDefaultContainer();
const W = +w, H = +h;
c.vkFormat = 43; c.pixelWidth = W; c.pixelHeight = H; c.typeSize = 1;  // R8G8B8A8_SRGB
const px = new Uint8Array(W * H * 4);
for (let i = 0; i < W * H; i++) px.set([((i % W) * 255) / W, 40, 200, 255], i * 4);
c.levels = [{ levelData: px, uncompressedByteLength: px.length }];
fs.writeFileSync(out, ktx.write(c));
"""


# Real BasisU KTX2 textures, 16x16, a red/blue checker of 4 px cells (no encoder is
# installed here: made once with the npm package ktx2-encoder 0.6.0, MIT, which
# wraps Basis Universal's encoder: encodeToKTX2(pixels, {isUASTC, generateMipmap: false})).
ETC1S_KTX2 = base64.b64decode(
    "q0tUWCAyMLsNChoKAAAAAAEAAAAQAAAAEAAAAAAAAAAAAAAAAQAAAAEAAAABAAAAaAAAACwAAACUAAAAJAAAALgA"
    "AAAAAAAAjwAAAAAAAABHAQAAAAAAAAcAAAAAAAAAAAAAAAAAAAAsAAAAAAAAAAIAKACjAQIAAwMAAAgAAAAAAAAA"
    "AAA/AAAAAAAAAAAA/////x8AAABLVFh3cml0ZXIAQmFzaXMgVW5pdmVyc2FsIDIuNTAAAAIAAgAsAAAACQAAADIA"
    "AAAAAAAAAAAAAAAAAAAHAAAAAAAAAAAAAAAYwEQAAAAAAACSgQOIAQAAAAAAea1gACYCAAAAAACQAAHABAAAAAAA"
    "AAKDAayqqqr6////B8BAlAAAAAAAyP8rigECAWACAAAAAAAAYQSYGzAAABAQAONeFEojCAAmAAAAAAAAEEAAq/xx"
    "NoNGEg=="
)
UASTC_KTX2 = base64.b64decode(
    "q0tUWCAyMLsNChoKAAAAAAEAAAAQAAAAEAAAAAAAAAAAAAAAAQAAAAEAAAACAAAAaAAAACwAAACUAAAAJAAAAAAA"
    "AAAAAAAAAAAAAAAAAAC4AAAAAAAAADAAAAAAAAAAAAEAAAAAAAAsAAAAAAAAAAIAKACmAQIAAwMAABAAAAAAAAAA"
    "AAB/AAAAAAAAAAAA/////x8AAABLVFh3cml0ZXIAQmFzaXMgVW5pdmVyc2FsIDIuNTAAACi1L/1gAAA1AQCIF0WL"
    "+z87rQMAlxsF5T/apQAJoJDz9JAzD0hRZFHIptGA9+qyFA=="
)
CHECKER_RED, CHECKER_BLUE = (220, 40, 40), (40, 90, 220)  # cell (0, 1) red, (0, 0) blue


class Builder:
    """A GLB from arrays: accessors and images appended to one BIN buffer."""

    def __init__(self) -> None:
        self.blob = b""
        self.doc: Doc = {
            "asset": {"version": "2.0", "generator": "shoplens tests"},
            "accessors": [],
            "bufferViews": [],
        }

    def _view(self, data: bytes, target: int | None = None) -> int:
        view: Doc = {"buffer": 0, "byteOffset": len(self.blob), "byteLength": len(data)}
        if target:
            view["target"] = target
        self.doc["bufferViews"].append(view)
        self.blob += _pad(data)
        return len(self.doc["bufferViews"]) - 1

    def accessor(
        self,
        arr: npt.NDArray[Any],
        ctype: int,
        kind: str,
        *,
        normalized: bool = False,
        minmax: bool = False,
        target: int | None = 34962,
    ) -> int:
        data = np.ascontiguousarray(arr)
        # Vertex attributes need 4-byte aligned elements: pad each row.
        row = data.reshape(len(data), -1)
        if target == 34962 and row.strides[0] % 4:
            pad = 4 - row.strides[0] % 4
            padded = np.zeros((len(row), row.strides[0] + pad), np.uint8)
            padded[:, : row.strides[0]] = row.view(np.uint8).reshape(len(row), -1)
            vi = self._view(padded.tobytes(), target)
            self.doc["bufferViews"][vi]["byteStride"] = row.strides[0] + pad
        else:
            vi = self._view(data.tobytes(), target)
        acc: Doc = {"bufferView": vi, "componentType": ctype, "count": len(data), "type": kind}
        if normalized:
            acc["normalized"] = True
        if minmax:
            acc["min"] = row.min(0).tolist()
            acc["max"] = row.max(0).tolist()
        self.doc["accessors"].append(acc)
        return len(self.doc["accessors"]) - 1

    def image(self, data: bytes, mime: str) -> int:
        vi = self._view(data)
        self.doc.setdefault("images", []).append({"bufferView": vi, "mimeType": mime})
        return len(self.doc["images"]) - 1

    def glb(self) -> bytes:
        self.doc["buffers"] = [{"byteLength": len(self.blob)}]
        return glb(self.doc, self.blob)


def box_arrays(size: float = 0.3) -> dict[str, npt.NDArray[Any]]:
    """The box of ``models.box`` as arrays (positions, normals, uvs, indices)."""
    doc, blob = box(size)
    out = {}
    for name, ai, dt, n in (("P", 1, "<f4", 3), ("N", 2, "<f4", 3), ("T", 3, "<f4", 2)):
        acc = doc["accessors"][ai]
        v = doc["bufferViews"][acc["bufferView"]]
        out[name] = np.frombuffer(blob, dt, acc["count"] * n, v["byteOffset"]).reshape(-1, n)
    acc = doc["accessors"][0]
    v = doc["bufferViews"][acc["bufferView"]]
    out["I"] = np.frombuffer(blob, "<u2", acc["count"], v["byteOffset"])
    return out


def _textured(b: Builder, material: Doc, image: bytes, mime: str = "image/png") -> None:
    b.doc["images"] = []
    b.image(image, mime)
    b.doc["textures"] = [{"source": 0, "sampler": 0}]
    b.doc["samplers"] = [{"magFilter": 9729, "minFilter": 9729}]
    b.doc["materials"] = [material]


def _mesh(b: Builder, attrs: Doc, indices: npt.NDArray[Any], material: int | None = 0) -> None:
    prim: Doc = {"attributes": attrs}
    prim["indices"] = b.accessor(indices.astype(np.uint16), 5123, "SCALAR", target=34963)
    if material is not None:
        prim["material"] = material
    b.doc["meshes"] = [{"primitives": [prim]}]


TRANSFORM = {"offset": [0.25, 0.1], "rotation": 0.3, "scale": [2.0, 3.0]}


def texture_transform_glb(normal_tt: dict[str, Any] | None = None) -> bytes:
    """The box with KHR_texture_transform (tiling, offset and rotation) on its texture;
    with ``normal_tt``, a normal map on the same uvs with that other transform."""
    a = box_arrays()
    b = Builder()
    attrs = {
        "POSITION": b.accessor(a["P"], 5126, "VEC3", minmax=True),
        "NORMAL": b.accessor(a["N"], 5126, "VEC3"),
        "TEXCOORD_0": b.accessor(a["T"], 5126, "VEC2"),
    }
    info = {"index": 0, "extensions": {"KHR_texture_transform": TRANSFORM}}
    material: Doc = {"pbrMetallicRoughness": {"baseColorTexture": info}}
    if normal_tt is not None:
        material["normalTexture"] = {
            "index": 0,
            "extensions": {"KHR_texture_transform": normal_tt},
        }
    _textured(b, material, checker_png())
    _mesh(b, attrs, a["I"])
    b.doc.update(scene=0, scenes=[{"nodes": [0]}], nodes=[{"mesh": 0}])
    b.doc["extensionsUsed"] = ["KHR_texture_transform"]
    return b.glb()


def quantized_glb() -> bytes:
    """The box as web optimisers write it (KHR_mesh_quantization): integer positions
    scaled by the node, normalized int8 normals, and 12-bit integer uvs whose
    scale is in a KHR_texture_transform."""
    a = box_arrays()
    b = Builder()
    q = np.round(a["P"] / 0.3 * 1000).astype(np.int16)
    uv = np.round(a["T"] * 4095).astype(np.uint16)
    attrs = {
        "POSITION": b.accessor(q, 5122, "VEC3", minmax=True),
        "NORMAL": b.accessor(np.round(a["N"] * 127).astype(np.int8), 5120, "VEC3", normalized=True),
        "TEXCOORD_0": b.accessor(uv, 5123, "VEC2"),
    }
    tt = {"scale": [1 / 4095, 1 / 4095]}
    info = {"index": 0, "extensions": {"KHR_texture_transform": tt}}
    _textured(b, {"pbrMetallicRoughness": {"baseColorTexture": info}}, checker_png())
    _mesh(b, attrs, a["I"])
    b.doc.update(scene=0, scenes=[{"nodes": [0]}], nodes=[{"mesh": 0, "scale": [3e-4] * 3}])
    b.doc["extensionsUsed"] = ["KHR_mesh_quantization", "KHR_texture_transform"]
    b.doc["extensionsRequired"] = ["KHR_mesh_quantization"]
    return b.glb()


FACE_COLOURS = np.array(
    [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1]], np.float32
)


def vertex_colour_glb() -> bytes:
    """The box with one COLOR_0 colour per face and no texture."""
    a = box_arrays()
    b = Builder()
    colours = np.repeat(FACE_COLOURS, 4, axis=0)
    attrs = {
        "POSITION": b.accessor(a["P"], 5126, "VEC3", minmax=True),
        "NORMAL": b.accessor(a["N"], 5126, "VEC3"),
        "COLOR_0": b.accessor(colours, 5126, "VEC3"),
    }
    b.doc["materials"] = [{"pbrMetallicRoughness": {"metallicFactor": 0.0}}]
    _mesh(b, attrs, a["I"])
    b.doc.update(scene=0, scenes=[{"nodes": [0]}], nodes=[{"mesh": 0}])
    return b.glb()


def ktx2_image(tmp: Path, px: int = 16) -> bytes:
    """An uncompressed RGBA8 KTX2 (no BasisU encoder is installed offline)."""
    nm = tools.find_tools().node_modules
    assert nm is not None
    out = tmp / "tex.ktx2"
    script = tmp / "ktx2_writer.mjs"
    script.write_text(KTX2_WRITER)
    subprocess.run(["node", str(script), str(nm), str(out), str(px), str(px)], check=True)
    return out.read_bytes()


def ktx2_glb(image: bytes) -> bytes:
    """The box whose texture is only a KTX2 image (KHR_texture_basisu, no fallback)."""
    a = box_arrays()
    b = Builder()
    attrs = {
        "POSITION": b.accessor(a["P"], 5126, "VEC3", minmax=True),
        "NORMAL": b.accessor(a["N"], 5126, "VEC3"),
        "TEXCOORD_0": b.accessor(a["T"], 5126, "VEC2"),
    }
    _textured(b, {"pbrMetallicRoughness": {"baseColorTexture": {"index": 0}}}, image, "image/ktx2")
    b.doc["textures"] = [{"sampler": 0, "extensions": {"KHR_texture_basisu": {"source": 0}}}]
    _mesh(b, attrs, a["I"])
    b.doc.update(scene=0, scenes=[{"nodes": [0]}], nodes=[{"mesh": 0}])
    b.doc["extensionsUsed"] = b.doc["extensionsRequired"] = ["KHR_texture_basisu"]
    return b.glb()


def _quat(axis: tuple[float, float, float], angle: float) -> list[float]:
    ax = np.array(axis, float) / np.linalg.norm(axis)
    return [*(ax * math.sin(angle / 2)).tolist(), math.cos(angle / 2)]


def rotated_sphere_glb() -> tuple[bytes, npt.NDArray[np.float64]]:
    """A sphere (r 0.2 m) under two rotated nodes; returns its world-space vertices.

    The box around the rotated accessor box is ~1.4x too wide; the vertices are not.
    """
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=0.2)
    pts = np.asarray(sphere.vertices, np.float32)
    b = Builder()
    attrs = {"POSITION": b.accessor(pts, 5126, "VEC3", minmax=True)}
    b.doc["materials"] = [{}]
    _mesh(b, attrs, np.asarray(sphere.faces).reshape(-1))
    outer = {"children": [1], "rotation": _quat((0, 1, 0), math.pi / 4), "translation": [0, 0.2, 0]}
    inner = {"mesh": 0, "rotation": _quat((1, 0, 0), math.pi / 5)}
    b.doc.update(scene=0, scenes=[{"nodes": [0]}], nodes=[outer, inner])
    m = trimesh.transformations
    world = (
        m.translation_matrix([0, 0.2, 0])
        @ m.rotation_matrix(math.pi / 4, [0, 1, 0])
        @ m.rotation_matrix(math.pi / 5, [1, 0, 0])
    )
    homo = np.c_[pts.astype(np.float64), np.ones(len(pts))]
    return b.glb(), (homo @ world.T)[:, :3]


SKIN_TURN = trimesh.transformations.rotation_matrix(math.pi / 2, [0, 1, 0])[:3, :3]


def skinned_glb() -> tuple[bytes, npt.NDArray[np.float64]]:
    """A box modelled in centimetres (30 units), skinned to two joints under a 0.01
    scale that sets it 0.1 m below its origin and turns it 90 degrees about Y,
    like rigged characters (Fox, BrainStem); returns its world-space vertices in
    the pose of the node tree (0.3 m, min y -0.1)."""
    a = box_arrays(30.0)
    n = len(a["P"])
    b = Builder()
    joints = np.zeros((n, 4), np.uint8)
    joints[:, 1] = 1
    weights = np.zeros((n, 4), np.float32)
    weights[:, 0] = weights[:, 1] = 0.5
    attrs = {
        "POSITION": b.accessor(a["P"], 5126, "VEC3", minmax=True),
        "NORMAL": b.accessor(a["N"], 5126, "VEC3"),
        "JOINTS_0": b.accessor(joints, 5121, "VEC4"),
        "WEIGHTS_0": b.accessor(weights, 5126, "VEC4"),
    }
    b.doc["materials"] = [{}]
    _mesh(b, attrs, a["I"])
    # Joint 2 is joint 1's child, turned 90 degrees about Y; its inverse bind
    # matrix undoes that, so both joints move the mesh the same way.
    ibm = np.stack(
        [np.eye(4), np.linalg.inv(trimesh.transformations.rotation_matrix(math.pi / 2, [0, 1, 0]))]
    )
    ibm_i = b.accessor(
        ibm.transpose(0, 2, 1).reshape(2, 16).astype(np.float32), 5126, "MAT4", target=None
    )
    b.doc["skins"] = [{"joints": [2, 3], "inverseBindMatrices": ibm_i, "skeleton": 1}]
    b.doc.update(
        scene=0,
        scenes=[{"nodes": [0, 1]}],
        nodes=[
            {"mesh": 0, "skin": 0, "name": "body"},
            {"name": "armature", "children": [2], "scale": [0.01] * 3},
            {
                "name": "hips",
                "children": [3],
                "translation": [0, -10.0, 0],
                "rotation": _quat((0, 1, 0), math.pi / 2),
            },
            {"name": "spine", "rotation": _quat((0, 1, 0), math.pi / 2)},
        ],
    )
    world = a["P"].astype(np.float64) * 0.01 @ SKIN_TURN.T + np.array([0, -0.1, 0])
    return b.glb(), world


def instanced_glb(copies: int = 8) -> bytes:
    """Eight nodes sharing one mesh: what glTF-Transform turns into GPU instancing."""
    doc, blob = box(0.1, texture=noise_png())  # WebP makes a smaller variant
    doc["nodes"] = [{"mesh": 0, "translation": [0.15 * i, 0, 0]} for i in range(copies)]
    doc["scenes"] = [{"nodes": list(range(copies))}]
    return glb(doc, blob)


def noise_png(px: int = 512) -> bytes:
    noise = np.random.default_rng(0).integers(0, 255, (px, px, 3), dtype=np.uint8)
    png = io.BytesIO()
    Image.fromarray(noise).save(png, "PNG")
    return png.getvalue()


def draco_glb(tmp: Path) -> bytes:
    """A dense textured sphere (20k triangles) compressed with Draco by glTF-Transform."""
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=0.2)
    pts = np.asarray(sphere.vertices, np.float32)
    uv = (pts[:, :2] / 0.4 + 0.5).astype(np.float32)
    b = Builder()
    attrs = {
        "POSITION": b.accessor(pts, 5126, "VEC3", minmax=True),
        "NORMAL": b.accessor(np.asarray(sphere.vertex_normals, np.float32), 5126, "VEC3"),
        "TEXCOORD_0": b.accessor(uv, 5126, "VEC2"),
    }
    _textured(b, {"pbrMetallicRoughness": {"baseColorTexture": {"index": 0}}}, noise_png())
    _mesh(b, attrs, np.asarray(sphere.faces).reshape(-1))
    b.doc.update(scene=0, scenes=[{"nodes": [0]}], nodes=[{"mesh": 0}])
    src, out = tmp / "plain-sphere.glb", tmp / "draco-sphere.glb"
    src.write_bytes(b.glb())
    tools.gltf_transform(["draco", str(src), str(out)])
    return out.read_bytes()


def spec_gloss_glb() -> bytes:
    """The box whose material needs KHR_materials_pbrSpecularGlossiness."""
    doc, blob = box()
    doc["materials"] = [
        {
            "extensions": {
                "KHR_materials_pbrSpecularGlossiness": {
                    "diffuseFactor": [0.8, 0.2, 0.2, 1.0],
                    "specularFactor": [0.1, 0.1, 0.1],
                    "glossinessFactor": 0.4,
                }
            }
        }
    ]
    ext = "KHR_materials_pbrSpecularGlossiness"
    doc["extensionsUsed"] = doc["extensionsRequired"] = [ext]
    return glb(doc, blob)


def data_uri_gltf() -> bytes:
    """The box as one .gltf file, its buffer a base64 data: URI."""
    doc, blob = box()
    doc["buffers"] = [
        {
            "byteLength": len(blob),
            "uri": "data:application/octet-stream;base64," + base64.b64encode(blob).decode(),
        }
    ]
    return json.dumps(doc).encode()


def glb_in_zip(data: bytes, name: str = "chair/model.glb") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, data)
    return buf.getvalue()
