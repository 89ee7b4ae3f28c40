"""GLB -> USDZ for iOS Quick Look, with usd-core (pxr).

Reads a *plain* GLB (Draco/meshopt already decoded by ``optimise.decompress``)
and writes meshes (points, normals, st with V flipped, triangles), node
transforms and UsdPreviewSurface materials (base colour, normal,
metallic/roughness split into single-channel PNGs, occlusion, emissive) and the
AR Quick Look anchoring of the product's placement (``anchoring.py``) on the
root prim, then packages it as a USDZ (root layer first, 64-byte aligned,
uncompressed) and runs every registered USD validator on it.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pxr import Gf, Sdf, Usd, UsdGeom, UsdShade, UsdValidation, Vt

from shoplens.ar_assets.anchoring import Anchoring
from shoplens.ar_assets.gltf import (
    Gltf,
    GltfFormatError,
    as_int,
    node_matrix,
    parse_json,
    read_accessor,
    scene_roots,
    split_glb,
    view_bytes,
)

log = logging.getLogger(__name__)

WRAP = {10497: "repeat", 33071: "clamp", 33648: "mirror"}


@dataclass
class UsdzResult:
    path: Path
    checker_errors: list[str] = field(default_factory=list)
    checker_warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # features dropped on the way


class UsdzFailed(Exception):
    pass


def read_glb(path: Path) -> Gltf:
    json_chunk, bin_chunk = split_glb(path.read_bytes())
    g = Gltf(parse_json(json_chunk))
    g.buffers = [bin_chunk if i == 0 else None for i, _ in enumerate(g.items("buffers"))]
    return g


class _Converter:
    def __init__(self, g: Gltf, stage: Usd.Stage, tex_dir: Path, textures: bool) -> None:
        self.g, self.stage, self.tex_dir, self.textures = g, stage, tex_dir, textures
        self.notes: list[str] = []
        self.materials: dict[int, UsdShade.Material] = {}
        self.tex_files: dict[tuple[int, str], str | None] = {}

    # ------------------------------------------------------------ textures
    def _texture_file(self, tex_index: int, channel: str) -> str | None:
        """Relative path of a PNG/JPEG for texture ``tex_index`` ('rgba', 'g' or 'b')."""
        textures = self.g.items("textures")
        if not 0 <= tex_index < len(textures):
            return None
        tex = textures[tex_index]
        exts = tex.get("extensions") or {}
        src = as_int(tex.get("source"))
        for ext in ("EXT_texture_webp", "KHR_texture_basisu"):
            if src < 0 and isinstance(exts.get(ext), dict):
                src = as_int(exts[ext].get("source"))
        key = (src, channel)
        if key in self.tex_files:
            return self.tex_files[key]
        self.tex_files[key] = None
        images = self.g.items("images")
        if not 0 <= src < len(images) or "bufferView" not in images[src]:
            self.notes.append(f"texture {tex_index}: image unavailable, dropped")
            return None
        resolved = view_bytes(self.g, as_int(images[src]["bufferView"]))
        if resolved is None:
            return None
        data = resolved[0]
        try:
            with Image.open(io.BytesIO(data)) as im:
                fmt = im.format
                if channel == "rgba" and fmt in ("PNG", "JPEG"):
                    out_bytes, ext = data, "png" if fmt == "PNG" else "jpg"
                else:
                    im.load()
                    conv = im.convert("RGBA") if im.mode not in ("RGB", "RGBA") else im
                    if channel in ("g", "b"):
                        conv = conv.getchannel("G" if channel == "g" else "B")
                    buf = io.BytesIO()
                    conv.save(buf, "PNG")
                    out_bytes, ext = buf.getvalue(), "png"
        except (OSError, ValueError, SyntaxError):
            self.notes.append(f"image {src}: format not readable for USDZ (KTX2?), texture dropped")
            return None
        name = f"img{src}_{channel}.{ext}"
        (self.tex_dir / name).write_bytes(out_bytes)
        self.tex_files[key] = name
        return name

    def _uv_texture(
        self,
        mat: UsdShade.Material,
        st_reader: dict[int, UsdShade.Shader],
        name: str,
        info: dict[str, Any],
        channel: str,
        srgb: bool,
    ) -> UsdShade.Shader | None:
        if not self.textures:
            return None
        rel = self._texture_file(as_int(info.get("index")), channel)
        if rel is None:
            return None
        if (info.get("extensions") or {}).get("KHR_texture_transform"):
            self.notes.append("KHR_texture_transform is not converted to USD")
        uv_set = max(as_int(info.get("texCoord"), 0), 0)
        reader = st_reader.get(uv_set)
        if reader is None:
            reader = UsdShade.Shader.Define(self.stage, mat.GetPath().AppendChild(f"st{uv_set}"))
            reader.CreateIdAttr("UsdPrimvarReader_float2")
            reader.CreateInput("varname", Sdf.ValueTypeNames.String).Set(_st_name(uv_set))
            reader.CreateOutput("result", Sdf.ValueTypeNames.Float2)
            st_reader[uv_set] = reader
        sh = UsdShade.Shader.Define(self.stage, mat.GetPath().AppendChild(name))
        sh.CreateIdAttr("UsdUVTexture")
        sh.CreateInput("file", Sdf.ValueTypeNames.Asset).Set(rel)
        sh.CreateInput("st", Sdf.ValueTypeNames.Float2).ConnectToSource(
            reader.ConnectableAPI(), "result"
        )
        sh.CreateInput("sourceColorSpace", Sdf.ValueTypeNames.Token).Set("sRGB" if srgb else "raw")
        tex = self.g.items("textures")[as_int(info.get("index"))]
        samplers = self.g.items("samplers")
        si = as_int(tex.get("sampler"))
        sampler = samplers[si] if 0 <= si < len(samplers) else {}
        sh.CreateInput("wrapS", Sdf.ValueTypeNames.Token).Set(
            WRAP.get(as_int(sampler.get("wrapS"), 10497), "repeat")
        )
        sh.CreateInput("wrapT", Sdf.ValueTypeNames.Token).Set(
            WRAP.get(as_int(sampler.get("wrapT"), 10497), "repeat")
        )
        return sh

    # ------------------------------------------------------------ materials
    def material(self, index: int, scope: Sdf.Path) -> UsdShade.Material:
        if index in self.materials:
            return self.materials[index]
        mats = self.g.items("materials")
        m = mats[index] if 0 <= index < len(mats) else {}
        mat = UsdShade.Material.Define(self.stage, scope.AppendChild(f"Material_{max(index, 0)}"))
        pbr = m.get("pbrMetallicRoughness") or {}
        surf = UsdShade.Shader.Define(self.stage, mat.GetPath().AppendChild("PreviewSurface"))
        surf.CreateIdAttr("UsdPreviewSurface")
        mat.CreateSurfaceOutput().ConnectToSource(surf.ConnectableAPI(), "surface")
        readers: dict[int, UsdShade.Shader] = {}
        F, C3, F3, F4 = (
            Sdf.ValueTypeNames.Float,
            Sdf.ValueTypeNames.Color3f,
            Sdf.ValueTypeNames.Float3,
            Sdf.ValueTypeNames.Float4,
        )
        base = [float(v) for v in pbr.get("baseColorFactor", [1, 1, 1, 1])]
        alpha_mode = m.get("alphaMode", "OPAQUE")
        diffuse = surf.CreateInput("diffuseColor", C3)
        opacity = surf.CreateInput("opacity", F)
        diffuse.Set(Gf.Vec3f(*base[:3]))
        opacity.Set(base[3] if alpha_mode != "OPAQUE" else 1.0)
        if alpha_mode == "MASK":
            surf.CreateInput("opacityThreshold", F).Set(float(m.get("alphaCutoff", 0.5)))
        if isinstance(pbr.get("baseColorTexture"), dict):
            info = pbr["baseColorTexture"]
            t = self._uv_texture(mat, readers, "baseColorTex", info, "rgba", True)
            if t is not None:
                t.CreateInput("scale", F4).Set(Gf.Vec4f(*base))
                t.CreateOutput("rgb", F3)
                diffuse.ConnectToSource(t.ConnectableAPI(), "rgb")
                if alpha_mode != "OPAQUE":
                    t.CreateOutput("a", F)
                    opacity.ConnectToSource(t.ConnectableAPI(), "a")
        metallic_f = float(pbr.get("metallicFactor", 1.0))
        rough_f = float(pbr.get("roughnessFactor", 1.0))
        metallic = surf.CreateInput("metallic", F)
        rough = surf.CreateInput("roughness", F)
        metallic.Set(metallic_f)
        rough.Set(rough_f)
        mr = pbr.get("metallicRoughnessTexture")
        if isinstance(mr, dict):
            for inp, chan, factor, nm in (
                (rough, "g", rough_f, "roughnessTex"),
                (metallic, "b", metallic_f, "metallicTex"),
            ):
                t = self._uv_texture(mat, readers, nm, mr, chan, False)
                if t is not None:
                    t.CreateInput("scale", F4).Set(Gf.Vec4f(factor, factor, factor, 1))
                    t.CreateOutput("r", F)
                    inp.ConnectToSource(t.ConnectableAPI(), "r")
        if isinstance(m.get("normalTexture"), dict):
            t = self._uv_texture(mat, readers, "normalTex", m["normalTexture"], "rgba", False)
            if t is not None:
                if float(m["normalTexture"].get("scale", 1.0)) != 1.0:
                    # USD requires scale (2,2,2,1) for 8-bit normal maps.
                    self.notes.append("normalTexture.scale is not converted to USD")
                t.CreateInput("scale", F4).Set(Gf.Vec4f(2, 2, 2, 1))
                t.CreateInput("bias", F4).Set(Gf.Vec4f(-1, -1, -1, 0))
                t.CreateOutput("rgb", F3)
                surf.CreateInput("normal", Sdf.ValueTypeNames.Normal3f).ConnectToSource(
                    t.ConnectableAPI(), "rgb"
                )
        if isinstance(m.get("occlusionTexture"), dict):
            t = self._uv_texture(mat, readers, "occlusionTex", m["occlusionTexture"], "rgba", False)
            if t is not None:
                t.CreateOutput("r", F)
                surf.CreateInput("occlusion", F).ConnectToSource(t.ConnectableAPI(), "r")
        emissive = [float(v) for v in m.get("emissiveFactor", [0, 0, 0])]
        strength = (m.get("extensions") or {}).get("KHR_materials_emissive_strength") or {}
        k = float(strength.get("emissiveStrength", 1.0))
        emissive = [v * k for v in emissive]
        if any(emissive):
            em = surf.CreateInput("emissiveColor", C3)
            em.Set(Gf.Vec3f(*emissive))
            if isinstance(m.get("emissiveTexture"), dict):
                t = self._uv_texture(
                    mat, readers, "emissiveTex", m["emissiveTexture"], "rgba", True
                )
                if t is not None:
                    t.CreateInput("scale", F4).Set(Gf.Vec4f(*emissive, 1))
                    t.CreateOutput("rgb", F3)
                    em.ConnectToSource(t.ConnectableAPI(), "rgb")
        for ext in m.get("extensions") or {}:
            if ext not in ("KHR_materials_emissive_strength", "KHR_materials_ior"):
                self.notes.append(f"{ext} has no UsdPreviewSurface equivalent (approximated)")
        ior = ((m.get("extensions") or {}).get("KHR_materials_ior") or {}).get("ior")
        if isinstance(ior, (int, float)):
            surf.CreateInput("ior", F).Set(float(ior))
        self.materials[index] = mat
        return mat

    # ------------------------------------------------------------ geometry
    def mesh(self, parent: Sdf.Path, mesh_index: int, mat_scope: Sdf.Path) -> None:
        meshes = self.g.items("meshes")
        prims = meshes[mesh_index].get("primitives", []) if 0 <= mesh_index < len(meshes) else []
        for p, prim in enumerate(prims):
            if as_int(prim.get("mode"), 4) != 4:
                self.notes.append(f"mesh {mesh_index}: non-triangle primitive skipped")
                continue
            attrs = prim.get("attributes") or {}
            if "POSITION" not in attrs:
                continue
            pts = read_accessor(self.g, as_int(attrs["POSITION"])).astype(np.float32)
            if "indices" in prim:
                idx = read_accessor(self.g, as_int(prim["indices"])).reshape(-1).astype(np.int32)
            else:
                idx = np.arange(len(pts), dtype=np.int32)
            idx = idx[: len(idx) - len(idx) % 3]
            if idx.size == 0 or int(idx.max()) >= len(pts):
                continue
            um = UsdGeom.Mesh.Define(self.stage, parent.AppendChild(f"Prim_{mesh_index}_{p}"))
            um.CreatePointsAttr(Vt.Vec3fArray.FromNumpy(pts))
            counts = np.full(len(idx) // 3, 3, np.int32)
            um.CreateFaceVertexCountsAttr(Vt.IntArray.FromNumpy(counts))
            um.CreateFaceVertexIndicesAttr(Vt.IntArray.FromNumpy(idx))
            um.CreateSubdivisionSchemeAttr("none")
            lo, hi = pts.min(0), pts.max(0)
            um.CreateExtentAttr(Vt.Vec3fArray([Gf.Vec3f(*lo.tolist()), Gf.Vec3f(*hi.tolist())]))
            if "NORMAL" in attrs:
                n = read_accessor(self.g, as_int(attrs["NORMAL"])).astype(np.float32)
                um.CreateNormalsAttr(Vt.Vec3fArray.FromNumpy(n))
                um.SetNormalsInterpolation(UsdGeom.Tokens.vertex)
            api = UsdGeom.PrimvarsAPI(um)
            for uv_set in (0, 1):
                key = f"TEXCOORD_{uv_set}"
                if key in attrs:
                    uv = read_accessor(self.g, as_int(attrs[key])).astype(np.float32).copy()
                    uv[:, 1] = 1.0 - uv[:, 1]  # glTF V runs down, USD st runs up
                    pv = api.CreatePrimvar(
                        _st_name(uv_set),
                        Sdf.ValueTypeNames.TexCoord2fArray,
                        UsdGeom.Tokens.vertex,
                    )
                    pv.Set(Vt.Vec2fArray.FromNumpy(uv))
            mi = as_int(prim.get("material"))
            mats = self.g.items("materials")
            if 0 <= mi < len(mats) and mats[mi].get("doubleSided"):
                um.CreateDoubleSidedAttr(True)
            mat = self.material(mi, mat_scope)
            UsdShade.MaterialBindingAPI.Apply(um.GetPrim()).Bind(mat)

    def node(self, parent: Sdf.Path, index: int, mat_scope: Sdf.Path, seen: set[int]) -> None:
        nodes = self.g.items("nodes")
        if not 0 <= index < len(nodes) or index in seen:
            return
        seen.add(index)
        n = nodes[index]
        xf = UsdGeom.Xform.Define(self.stage, parent.AppendChild(f"Node_{index}"))
        m = node_matrix(n)
        if not np.allclose(m, np.eye(4)):
            xf.AddTransformOp().Set(Gf.Matrix4d(m.T.tolist()))
        if "mesh" in n:
            self.mesh(xf.GetPath(), as_int(n["mesh"]), mat_scope)
        for c in n.get("children", []) or []:
            self.node(xf.GetPath(), as_int(c), mat_scope, seen)


def _st_name(uv_set: int) -> str:
    return "st" if uv_set == 0 else f"st{uv_set}"


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


def _build(g: Gltf, workdir: Path, textures: bool, anchoring: Anchoring) -> tuple[Path, list[str]]:
    workdir.mkdir(parents=True, exist_ok=True)
    tex_dir = workdir
    layer = workdir / "model.usdc"
    stage = Usd.Stage.CreateNew(str(layer))
    UsdGeom.SetStageMetersPerUnit(stage, 1.0)
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.y)
    root = UsdGeom.Xform.Define(stage, "/Root")
    Usd.ModelAPI(root.GetPrim()).SetKind("component")
    stage.SetDefaultPrim(root.GetPrim())
    scope = UsdGeom.Scope.Define(stage, "/Root/Materials").GetPath()
    parent = _anchor(stage, root, anchoring)
    conv = _Converter(g, stage, tex_dir, textures)
    seen: set[int] = set()
    for r in scene_roots(g):
        conv.node(parent, r, scope, seen)
    stage.GetRootLayer().Save()
    return layer, sorted(set(conv.notes))


def _package(layer: Path, out: Path) -> bool:
    """Write the USDZ: the root layer first, then the textures beside it.

    This is what ``UsdUtils.CreateNewARKitUsdzPackage`` does for a single flat
    layer, without its asset-localisation pass, which in usd-core 26 warns once
    per texture ("Failed to resolve reference @0/...@") although the package is
    fine. The USD validators (UsdzPackageValidator among them) check the result.
    """
    writer = Sdf.ZipFileWriter.CreateNew(str(out))
    writer.AddFile(str(layer), layer.name)
    for tex in sorted(layer.parent.iterdir()):
        if tex.suffix in (".png", ".jpg"):
            writer.AddFile(str(tex), tex.name)
    writer.Save()
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


def convert(plain_glb: Path, out: Path, workdir: Path, *, anchoring: Anchoring) -> UsdzResult:
    """Write ``out`` (.usdz) anchored as ``anchoring`` says; retried without textures
    if the first package fails the checks."""
    try:
        g = read_glb(plain_glb)
    except GltfFormatError as exc:
        raise UsdzFailed(exc.message) from exc
    attempts = [("full", True), ("untextured", False)]
    result: UsdzResult | None = None
    for label, textures in attempts:
        try:
            layer, notes = _build(g, workdir / label, textures, anchoring)
            if out.exists():
                out.unlink()
            ok = _package(layer, out)
        except (GltfFormatError, ValueError, RuntimeError) as exc:  # Tf errors are RuntimeError
            log.warning("USDZ %s build failed: %s", label, exc)
            continue
        if not ok or not out.is_file():
            continue
        errors, warnings = check(out)
        result = UsdzResult(out, errors, warnings, notes)
        if not errors:
            if label != "full":
                result.notes.append("textures dropped: the textured USDZ failed the USD checks")
            return result
    if result is None:
        raise UsdzFailed("usd-core could not write a USDZ package")
    return result
