"""glTF materials as UsdPreviewSurface networks.

Base colour, metallic/roughness (split into single channels), normal,
occlusion and emissive textures, each through a ``UsdPrimvarReader_float2`` and,
where the glTF has ``KHR_texture_transform``, baked into the coordinates where one
transform per coordinate set allows (``Materials.baked``), else a
``UsdTransform2d`` node (as Three.js's USDZ exporter writes it). A
material of vertex-coloured primitives multiplies by the ``displayColor``
primvar (the glTF COLOR_0) through a ``UsdPrimvarReader_float3``. What has no
UsdPreviewSurface equivalent is recorded in ``Notes`` per material.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from pxr import Gf, Sdf, Usd, UsdShade

from shoplens.ar_assets.gltf import Gltf, as_int
from shoplens.ar_assets.usdz.textures import Textures

WRAP = {10497: "repeat", 33071: "clamp", 33648: "mirror"}
# Extensions UsdPreviewSurface renders exactly (ior, emissive strength) or that
# only carry data for other parts (variants are handled per USDZ).
EXACT_EXTENSIONS = ("KHR_materials_emissive_strength", "KHR_materials_ior", "KHR_texture_transform")
F, C3, F2, F3, F4 = (
    Sdf.ValueTypeNames.Float,
    Sdf.ValueTypeNames.Color3f,
    Sdf.ValueTypeNames.Float2,
    Sdf.ValueTypeNames.Float3,
    Sdf.ValueTypeNames.Float4,
)


@dataclass
class Notes:
    """What a USDZ shows differently from the glTF, per material and texture."""

    approximated: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)


def st_name(uv_set: int) -> str:
    return "st" if uv_set == 0 else f"st{uv_set}"


def apply_gltf_transform(
    uv: npt.NDArray[np.float32], tt: dict[str, Any]
) -> npt.NDArray[np.float32]:
    """``uv`` (glTF convention, V down) through KHR_texture_transform: T * R * S."""
    tx, ty = (float(v) for v in (tt.get("offset") or [0.0, 0.0])[:2])
    r = float(tt.get("rotation", 0.0))
    sx, sy = (float(v) for v in (tt.get("scale") or [1.0, 1.0])[:2])
    c, s = math.cos(r), math.sin(r)
    u, v = uv[:, 0] * sx, uv[:, 1] * sy
    out = np.empty_like(uv)
    out[:, 0] = c * u + s * v + tx
    out[:, 1] = -s * u + c * v + ty
    return out


def usd_transform(tt: dict[str, Any]) -> tuple[tuple[float, float], float, tuple[float, float]]:
    """(translation, rotation in degrees, scale) of a UsdTransform2d equal to ``tt``.

    glTF applies T*R(r)*S to (u, v) with v running down; USD's st runs up
    (st = (u, 1 - v)). Conjugating by that flip keeps the scale, turns the
    rotation into USD's counter-clockwise +r, and moves the translation to
    (tx + sin r * sy, 1 - ty - cos r * sy).
    """
    tx, ty = (float(v) for v in (tt.get("offset") or [0.0, 0.0])[:2])
    r = float(tt.get("rotation", 0.0))
    sx, sy = (float(v) for v in (tt.get("scale") or [1.0, 1.0])[:2])
    s, c = math.sin(r), math.cos(r)
    return (tx + s * sy, 1.0 - ty - c * sy), math.degrees(r), (sx, sy)


class Materials:
    def __init__(self, g: Gltf, stage: Usd.Stage, textures: Textures, use_textures: bool) -> None:
        self.g, self.stage, self.textures, self.use_textures = g, stage, textures, use_textures
        self.notes = Notes()
        self.made: dict[tuple[int, bool], UsdShade.Material] = {}
        self.current = -1  # the material being built

    def _texture(
        self,
        mat: UsdShade.Material,
        readers: dict[tuple[int, str], UsdShade.Shader],
        name: str,
        info: dict[str, Any],
        channel: str,
        srgb: bool,
        label: str,
    ) -> UsdShade.Shader | None:
        if not self.use_textures:
            return None
        tex_index = as_int(info.get("index"))
        rel = self.textures.file(tex_index, channel, f"{label} {name}")
        if rel is None:
            return None
        tt = (info.get("extensions") or {}).get("KHR_texture_transform")
        tt = tt if isinstance(tt, dict) else None
        uv_set = max(as_int(info.get("texCoord"), 0), 0)
        if tt is not None and "texCoord" in tt:
            uv_set = max(as_int(tt.get("texCoord"), uv_set), 0)
        reader = readers.get((uv_set, ""))
        if reader is None:
            reader = UsdShade.Shader.Define(self.stage, mat.GetPath().AppendChild(f"st{uv_set}"))
            reader.CreateIdAttr("UsdPrimvarReader_float2")
            reader.CreateInput("varname", Sdf.ValueTypeNames.String).Set(st_name(uv_set))
            reader.CreateOutput("result", F2)
            readers[(uv_set, "")] = reader
        source, output = reader, "result"
        if tt is not None and self.baked(self.current).get(uv_set) != tt:
            xf = UsdShade.Shader.Define(self.stage, mat.GetPath().AppendChild(f"{name}Transform"))
            xf.CreateIdAttr("UsdTransform2d")
            xf.CreateInput("in", F2).ConnectToSource(reader.ConnectableAPI(), "result")
            t, rot, s = usd_transform(tt)
            xf.CreateInput("translation", F2).Set(Gf.Vec2f(*t))
            xf.CreateInput("rotation", F).Set(rot)
            xf.CreateInput("scale", F2).Set(Gf.Vec2f(*s))
            xf.CreateOutput("result", F2)
            source = xf
        sh = UsdShade.Shader.Define(self.stage, mat.GetPath().AppendChild(name))
        sh.CreateIdAttr("UsdUVTexture")
        sh.CreateInput("file", Sdf.ValueTypeNames.Asset).Set(rel)
        sh.CreateInput("st", F2).ConnectToSource(source.ConnectableAPI(), output)
        sh.CreateInput("sourceColorSpace", Sdf.ValueTypeNames.Token).Set("sRGB" if srgb else "raw")
        sampler = self.textures.sampler(tex_index)
        for axis in ("S", "T"):
            wrap = WRAP.get(as_int(sampler.get(f"wrap{axis}"), 10497), "repeat")
            sh.CreateInput(f"wrap{axis}", Sdf.ValueTypeNames.Token).Set(wrap)
        return sh

    def baked(self, index: int) -> dict[int, dict[str, Any]]:
        """{uv set: transform} that ``geometry`` bakes into the st of material ``index``.

        Baking works where every texture of the material read through a set has
        the same transform: the coordinates then are what the viewer samples,
        with no UsdTransform2d to rely on (and quantized 0...4095 uvs become
        0...1 in the file). Other sets keep a UsdTransform2d per texture.
        """
        mats = self.g.items("materials")
        m = mats[index] if 0 <= index < len(mats) else {}
        pbr = m.get("pbrMetallicRoughness") or {}
        infos = [pbr.get("baseColorTexture"), pbr.get("metallicRoughnessTexture")]
        infos += [m.get(k) for k in ("normalTexture", "occlusionTexture", "emissiveTexture")]
        by_set: dict[int, list[Any]] = {}
        for info in infos:
            if not isinstance(info, dict):
                continue
            tt = (info.get("extensions") or {}).get("KHR_texture_transform")
            tt = tt if isinstance(tt, dict) else None
            uv_set = max(as_int(info.get("texCoord"), 0), 0)
            if tt is not None and "texCoord" in tt:
                uv_set = max(as_int(tt.get("texCoord"), uv_set), 0)
            by_set.setdefault(uv_set, []).append(tt)
        return {
            k: v[0] for k, v in by_set.items() if v[0] is not None and all(t == v[0] for t in v)
        }

    def material(
        self, index: int, scope: Sdf.Path, vertex_colors: bool = False
    ) -> UsdShade.Material:
        key = (index, vertex_colors)
        if key in self.made:
            return self.made[key]
        self.current = index
        mats = self.g.items("materials")
        m = mats[index] if 0 <= index < len(mats) else {}
        suffix = "_vc" if vertex_colors else ""
        label = f"material {max(index, 0)} ({m.get('name') or 'unnamed'})"
        mat = UsdShade.Material.Define(
            self.stage, scope.AppendChild(f"Material_{max(index, 0)}{suffix}")
        )
        pbr = m.get("pbrMetallicRoughness") or {}
        surf = UsdShade.Shader.Define(self.stage, mat.GetPath().AppendChild("PreviewSurface"))
        surf.CreateIdAttr("UsdPreviewSurface")
        mat.CreateSurfaceOutput().ConnectToSource(surf.ConnectableAPI(), "surface")
        readers: dict[tuple[int, str], UsdShade.Shader] = {}
        base = [float(v) for v in pbr.get("baseColorFactor", [1, 1, 1, 1])]
        alpha_mode = m.get("alphaMode", "OPAQUE")
        diffuse = surf.CreateInput("diffuseColor", C3)
        opacity = surf.CreateInput("opacity", F)
        diffuse.Set(Gf.Vec3f(*base[:3]))
        opacity.Set(base[3] if alpha_mode != "OPAQUE" else 1.0)
        if alpha_mode == "MASK":
            surf.CreateInput("opacityThreshold", F).Set(float(m.get("alphaCutoff", 0.5)))
        base_tex = None
        if isinstance(pbr.get("baseColorTexture"), dict):
            info = pbr["baseColorTexture"]
            base_tex = self._texture(mat, readers, "baseColorTex", info, "rgba", True, label)
            if base_tex is not None:
                base_tex.CreateInput("scale", F4).Set(Gf.Vec4f(*base))
                base_tex.CreateOutput("rgb", F3)
                diffuse.ConnectToSource(base_tex.ConnectableAPI(), "rgb")
                if alpha_mode != "OPAQUE":
                    base_tex.CreateOutput("a", F)
                    opacity.ConnectToSource(base_tex.ConnectableAPI(), "a")
        if vertex_colors:
            self._vertex_colors(mat, diffuse, base, base_tex, label)
        self._metal_rough(mat, readers, surf, pbr, label)
        self._normal_occlusion(mat, readers, surf, m, label)
        self._emissive(mat, readers, surf, m, label)
        for ext in m.get("extensions") or {}:
            if ext not in EXACT_EXTENSIONS:
                self.notes.approximated.append(
                    f"{label}: {ext} has no UsdPreviewSurface equivalent, left out"
                )
        ior = ((m.get("extensions") or {}).get("KHR_materials_ior") or {}).get("ior")
        if isinstance(ior, (int, float)):
            surf.CreateInput("ior", F).Set(float(ior))
        self.made[key] = mat
        return mat

    def _vertex_colors(
        self,
        mat: UsdShade.Material,
        diffuse: UsdShade.Input,
        base: list[float],
        base_tex: UsdShade.Shader | None,
        label: str,
    ) -> None:
        """diffuseColor = displayColor (COLOR_0) x base colour factor.

        With a base colour texture too, UsdPreviewSurface cannot multiply two
        inputs: the texture wins and the colours stay only as displayColor.
        """
        if base_tex is not None:
            self.notes.approximated.append(
                f"{label}: vertex colours x base colour texture cannot be multiplied in "
                "UsdPreviewSurface; the texture is shown, colours kept as displayColor"
            )
            return
        reader = UsdShade.Shader.Define(self.stage, mat.GetPath().AppendChild("displayColor"))
        reader.CreateIdAttr("UsdPrimvarReader_float3")
        reader.CreateInput("varname", Sdf.ValueTypeNames.String).Set("displayColor")
        reader.CreateOutput("result", F3)
        if any(abs(v - 1.0) > 1e-6 for v in base[:3]):
            self.notes.approximated.append(
                f"{label}: base colour factor x vertex colours shown as the vertex colours"
            )
        diffuse.ConnectToSource(reader.ConnectableAPI(), "result")

    def _metal_rough(
        self,
        mat: UsdShade.Material,
        readers: dict[tuple[int, str], UsdShade.Shader],
        surf: UsdShade.Shader,
        pbr: dict[str, Any],
        label: str,
    ) -> None:
        metallic_f = float(pbr.get("metallicFactor", 1.0))
        rough_f = float(pbr.get("roughnessFactor", 1.0))
        metallic = surf.CreateInput("metallic", F)
        rough = surf.CreateInput("roughness", F)
        metallic.Set(metallic_f)
        rough.Set(rough_f)
        mr = pbr.get("metallicRoughnessTexture")
        if not isinstance(mr, dict):
            return
        for inp, chan, factor, nm in (
            (rough, "g", rough_f, "roughnessTex"),
            (metallic, "b", metallic_f, "metallicTex"),
        ):
            t = self._texture(mat, readers, nm, mr, chan, False, label)
            if t is not None:
                t.CreateInput("scale", F4).Set(Gf.Vec4f(factor, factor, factor, 1))
                t.CreateOutput("r", F)
                inp.ConnectToSource(t.ConnectableAPI(), "r")

    def _normal_occlusion(
        self,
        mat: UsdShade.Material,
        readers: dict[tuple[int, str], UsdShade.Shader],
        surf: UsdShade.Shader,
        m: dict[str, Any],
        label: str,
    ) -> None:
        if isinstance(m.get("normalTexture"), dict):
            info = m["normalTexture"]
            t = self._texture(mat, readers, "normalTex", info, "rgba", False, label)
            if t is not None:
                k = float(info.get("scale", 1.0))
                if k != 1.0:
                    self.notes.approximated.append(
                        f"{label}: normalTexture.scale {k} shown as 1 (8-bit normal maps "
                        "need the fixed USD scale 2,2,2,1)"
                    )
                t.CreateInput("scale", F4).Set(Gf.Vec4f(2, 2, 2, 1))
                t.CreateInput("bias", F4).Set(Gf.Vec4f(-1, -1, -1, 0))
                t.CreateOutput("rgb", F3)
                surf.CreateInput("normal", Sdf.ValueTypeNames.Normal3f).ConnectToSource(
                    t.ConnectableAPI(), "rgb"
                )
        if isinstance(m.get("occlusionTexture"), dict):
            info = m["occlusionTexture"]
            t = self._texture(mat, readers, "occlusionTex", info, "rgba", False, label)
            if t is not None:
                t.CreateOutput("r", F)
                surf.CreateInput("occlusion", F).ConnectToSource(t.ConnectableAPI(), "r")

    def _emissive(
        self,
        mat: UsdShade.Material,
        readers: dict[tuple[int, str], UsdShade.Shader],
        surf: UsdShade.Shader,
        m: dict[str, Any],
        label: str,
    ) -> None:
        emissive = [float(v) for v in m.get("emissiveFactor", [0, 0, 0])]
        strength = (m.get("extensions") or {}).get("KHR_materials_emissive_strength") or {}
        k = float(strength.get("emissiveStrength", 1.0))
        emissive = [v * k for v in emissive]
        if not any(emissive):
            return
        em = surf.CreateInput("emissiveColor", C3)
        em.Set(Gf.Vec3f(*emissive))
        if isinstance(m.get("emissiveTexture"), dict):
            info = m["emissiveTexture"]
            t = self._texture(mat, readers, "emissiveTex", info, "rgba", True, label)
            if t is not None:
                t.CreateInput("scale", F4).Set(Gf.Vec4f(*emissive, 1))
                t.CreateOutput("rgb", F3)
                em.ConnectToSource(t.ConnectableAPI(), "rgb")
