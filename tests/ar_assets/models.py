"""Small glTF models generated in the tests (no files from ../shared needed)."""

from __future__ import annotations

import copy
import io
import json
import struct
import zipfile
from typing import Any

import numpy as np
from PIL import Image

Doc = dict[str, Any]


def checker_png(px: int = 64, fmt: str = "PNG") -> bytes:
    """A colourful checkerboard, so a screenshot of the model is clearly not blank."""
    yy, xx = np.mgrid[0:px, 0:px]
    cell = max(px // 8, 1)
    on = ((xx // cell + yy // cell) % 2).astype(bool)
    img = np.zeros((px, px, 3), np.uint8)
    img[on] = (220, 40, 40)
    img[~on] = (40, 90, 220)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, fmt)
    return buf.getvalue()


def _pad(b: bytes, fill: bytes = b"\x00") -> bytes:
    return b + fill * (-len(b) % 4)


def box(
    size: float = 0.3, texture: bytes | None = None, tex_mime: str = "image/png"
) -> tuple[Doc, bytes]:
    """A textured box standing on y=0, centred on x/z (metres, +Y up): (JSON, BIN)."""
    h = size / 2
    faces = [  # normal, u axis, v axis
        ((1, 0, 0), (0, 0, -1), (0, 1, 0)),
        ((-1, 0, 0), (0, 0, 1), (0, 1, 0)),
        ((0, 1, 0), (1, 0, 0), (0, 0, -1)),
        ((0, -1, 0), (1, 0, 0), (0, 0, 1)),
        ((0, 0, 1), (1, 0, 0), (0, 1, 0)),
        ((0, 0, -1), (-1, 0, 0), (0, 1, 0)),
    ]
    pos: list[Any] = []
    nrm: list[Any] = []
    uv: list[tuple[float, float]] = []
    idx: list[int] = []
    for n, u, v in faces:
        n_, u_, v_ = np.array(n, float), np.array(u, float), np.array(v, float)
        base = len(pos)
        for su, sv in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
            p = (n_ + su * u_ + sv * v_) * h + np.array([0, h, 0])
            pos.append(p)
            nrm.append(n_)
            uv.append(((su + 1) / 2, (1 - sv) / 2))
        idx += [base, base + 1, base + 2, base, base + 2, base + 3]
    P = np.array(pos, np.float32)
    N = np.array(nrm, np.float32)
    T = np.array(uv, np.float32)
    Ind = np.array(idx, np.uint16)
    tex = texture if texture is not None else checker_png()
    chunks = [Ind.tobytes(), P.tobytes(), N.tobytes(), T.tobytes(), tex]
    views, offset, blob = [], 0, b""
    for i, c in enumerate(chunks):
        view: dict[str, Any] = {"buffer": 0, "byteOffset": offset, "byteLength": len(c)}
        if i == 0:
            view["target"] = 34963
        elif i < 4:
            view["target"] = 34962
        views.append(view)
        blob += _pad(c)
        offset = len(blob)
    doc: Doc = {
        "asset": {"version": "2.0", "generator": "shoplens tests"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": "box"}],
        "meshes": [
            {
                "primitives": [
                    {
                        "attributes": {"POSITION": 1, "NORMAL": 2, "TEXCOORD_0": 3},
                        "indices": 0,
                        "material": 0,
                    }
                ]
            }
        ],
        "materials": [
            {
                "pbrMetallicRoughness": {
                    "baseColorTexture": {"index": 0},
                    "metallicFactor": 0.0,
                    "roughnessFactor": 0.8,
                }
            }
        ],
        "textures": [{"source": 0, "sampler": 0}],
        "samplers": [{"magFilter": 9729, "minFilter": 9987}],
        "images": [{"bufferView": 4, "mimeType": tex_mime}],
        "accessors": [
            {"bufferView": 0, "componentType": 5123, "count": len(Ind), "type": "SCALAR"},
            {
                "bufferView": 1,
                "componentType": 5126,
                "count": len(P),
                "type": "VEC3",
                "min": P.min(0).tolist(),
                "max": P.max(0).tolist(),
            },
            {"bufferView": 2, "componentType": 5126, "count": len(N), "type": "VEC3"},
            {"bufferView": 3, "componentType": 5126, "count": len(T), "type": "VEC2"},
        ],
        "bufferViews": views,
        "buffers": [{"byteLength": len(blob)}],
    }
    return doc, blob


def glb(doc: Doc, blob: bytes | None) -> bytes:
    js = _pad(json.dumps(doc, separators=(",", ":")).encode(), b" ")
    out = struct.pack("<II", len(js), 0x4E4F534A) + js
    if blob is not None:
        b = _pad(blob)
        out += struct.pack("<II", len(b), 0x004E4942) + b
    return struct.pack("<4sII", b"glTF", 2, 12 + len(out)) + out


def box_glb(**kw: Any) -> bytes:
    return glb(*box(**kw))


def mutate(fn: Any, **kw: Any) -> bytes:
    """A box GLB whose JSON was changed by ``fn(doc, blob) -> (doc, blob)``."""
    doc, blob = box(**kw)
    doc, blob = fn(copy.deepcopy(doc), blob)
    return glb(doc, blob)


def gltf_zip(
    doc_fn: Any = None,
    extra: dict[str, bytes] | None = None,
    folder: str = "model/",
) -> bytes:
    """A zip with model.gltf + model.bin + texture.png (optionally altered)."""
    doc, blob = box()
    # Split the texture out into a file, the rest into model.bin.
    tex_view = doc["bufferViews"][4]
    png = blob[tex_view["byteOffset"] : tex_view["byteOffset"] + tex_view["byteLength"]]
    doc["images"] = [{"uri": "texture.png"}]
    doc["bufferViews"] = doc["bufferViews"][:4]
    bin_len = tex_view["byteOffset"]
    doc["buffers"] = [{"byteLength": bin_len, "uri": "model.bin"}]
    if doc_fn is not None:
        doc = doc_fn(doc)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(folder + "model.gltf", json.dumps(doc))
        z.writestr(folder + "model.bin", blob[:bin_len])
        z.writestr(folder + "texture.png", png)
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    return buf.getvalue()


def variants_glb() -> bytes:
    """The box with two material variants, Blue and Red (KHR_materials_variants)."""

    def add_variants(doc: dict[str, Any], blob: bytes) -> tuple[dict[str, Any], bytes]:
        doc["extensionsUsed"] = ["KHR_materials_variants"]
        doc["materials"].append({"pbrMetallicRoughness": {"baseColorFactor": [1, 0, 0, 1]}})
        doc["extensions"] = {
            "KHR_materials_variants": {"variants": [{"name": "Blue"}, {"name": "Red"}]}
        }
        doc["meshes"][0]["primitives"][0]["extensions"] = {
            "KHR_materials_variants": {
                "mappings": [{"material": 0, "variants": [0]}, {"material": 1, "variants": [1]}]
            }
        }
        return doc, blob

    return mutate(add_variants)
