"""glTF nodes and meshes as USD Xforms and Meshes.

Points, normals, texture coordinates (every accessor read dequantized, a
texture transform baked in where ``Materials.baked`` allows, V flipped for
USD's st), vertex colours (COLOR_0 as ``displayColor`` and
``displayOpacity``) and node transforms. A skinned mesh is written in its rest
pose, its vertices moved by its joints (``gltf.primitive_points``), directly
under the scene root: a static USDZ has no skeleton to do it in Quick Look.
With ``variant`` set, primitives take that ``KHR_materials_variants`` material.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pxr import Gf, Sdf, Usd, UsdGeom, UsdShade, Vt

from shoplens.ar_assets.gltf import (
    Gltf,
    as_int,
    node_matrix,
    read_accessor,
    skin_blend,
    world_matrices,
)
from shoplens.ar_assets.usdz.materials import Materials, apply_gltf_transform, st_name


def variant_material(prim: dict[str, Any], variant: int | None) -> int:
    """The material a primitive shows in ``variant`` (its own one outside any mapping)."""
    default = as_int(prim.get("material"))
    if variant is None:
        return default
    ext = (prim.get("extensions") or {}).get("KHR_materials_variants") or {}
    for mapping in ext.get("mappings", []) or []:
        if isinstance(mapping, dict) and variant in (mapping.get("variants") or []):
            return as_int(mapping.get("material"), default)
    return default


class Geometry:
    def __init__(
        self, g: Gltf, stage: Usd.Stage, materials: Materials, variant: int | None
    ) -> None:
        self.g, self.stage, self.materials, self.variant = g, stage, materials, variant
        self.worlds = world_matrices(g)
        self.skipped: list[str] = []
        self.vertex_colored = 0

    def mesh(
        self,
        parent: Sdf.Path,
        node: dict[str, Any],
        mesh_index: int,
        mat_scope: Sdf.Path,
        skinned_root: Sdf.Path,
    ) -> None:
        meshes = self.g.items("meshes")
        prims = meshes[mesh_index].get("primitives", []) if 0 <= mesh_index < len(meshes) else []
        for p, prim in enumerate(prims):
            if not isinstance(prim, dict) or as_int(prim.get("mode"), 4) != 4:
                self.skipped.append(f"mesh {mesh_index}: non-triangle primitive {p} left out")
                continue
            attrs = prim.get("attributes") or {}
            if "POSITION" not in attrs:
                continue
            blend = None
            if "skin" in node and "JOINTS_0" in attrs and "WEIGHTS_0" in attrs:
                blend = skin_blend(self.g, node, prim, self.worlds)
            pts64 = read_accessor(self.g, as_int(attrs["POSITION"]))[:, :3].astype(np.float64)
            skinned = blend is not None and len(blend) == len(pts64)
            if skinned and blend is not None:  # in world space, under the scene root
                homo = np.c_[pts64, np.ones(len(pts64))]
                pts64 = np.einsum("nij,nj->ni", blend, homo)[:, :3]
            # else: under the node's Xform, in local coordinates
            pts = pts64[:, :3].astype(np.float32)
            if "indices" in prim:
                idx = read_accessor(self.g, as_int(prim["indices"])).reshape(-1).astype(np.int32)
            else:
                idx = np.arange(len(pts), dtype=np.int32)
            idx = idx[: len(idx) - len(idx) % 3]
            if idx.size == 0 or int(idx.max()) >= len(pts):
                continue
            where = skinned_root if skinned else parent
            name = f"Skinned_{mesh_index}_{p}" if skinned else f"Prim_{mesh_index}_{p}"
            um = UsdGeom.Mesh.Define(self.stage, where.AppendChild(name))
            um.CreatePointsAttr(Vt.Vec3fArray.FromNumpy(pts))
            counts = np.full(len(idx) // 3, 3, np.int32)
            um.CreateFaceVertexCountsAttr(Vt.IntArray.FromNumpy(counts))
            um.CreateFaceVertexIndicesAttr(Vt.IntArray.FromNumpy(idx))
            um.CreateSubdivisionSchemeAttr("none")
            lo, hi = pts.min(0), pts.max(0)
            um.CreateExtentAttr(Vt.Vec3fArray([Gf.Vec3f(*lo.tolist()), Gf.Vec3f(*hi.tolist())]))
            if "NORMAL" in attrs:
                n = read_accessor(self.g, as_int(attrs["NORMAL"]))[:, :3].astype(np.float64)
                if skinned and blend is not None:  # turned by the same joints as the points
                    n = np.einsum("nij,nj->ni", blend[:, :3, :3], n)
                    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
                nf = np.ascontiguousarray(n, dtype=np.float32)
                um.CreateNormalsAttr(Vt.Vec3fArray.FromNumpy(nf))
                um.SetNormalsInterpolation(UsdGeom.Tokens.vertex)
            api = UsdGeom.PrimvarsAPI(um)
            mi = variant_material(prim, self.variant)
            baked = self.materials.baked(mi)
            for uv_set in (0, 1):
                key = f"TEXCOORD_{uv_set}"
                if key in attrs:
                    uv = read_accessor(self.g, as_int(attrs[key]))[:, :2].astype(np.float32)
                    if uv_set in baked:
                        uv = apply_gltf_transform(uv, baked[uv_set])
                    uv[:, 1] = 1.0 - uv[:, 1]  # glTF V runs down, USD st runs up
                    pv = api.CreatePrimvar(
                        st_name(uv_set), Sdf.ValueTypeNames.TexCoord2fArray, UsdGeom.Tokens.vertex
                    )
                    pv.Set(Vt.Vec2fArray.FromNumpy(np.ascontiguousarray(uv)))
            colored = self._colors(um, attrs)
            mats = self.g.items("materials")
            if 0 <= mi < len(mats) and mats[mi].get("doubleSided"):
                um.CreateDoubleSidedAttr(True)
            mat = self.materials.material(mi, mat_scope, vertex_colors=colored)
            UsdShade.MaterialBindingAPI.Apply(um.GetPrim()).Bind(mat)

    def _colors(self, um: UsdGeom.Mesh, attrs: dict[str, Any]) -> bool:
        if "COLOR_0" not in attrs:
            return False
        c = read_accessor(self.g, as_int(attrs["COLOR_0"])).astype(np.float32)
        rgb = np.ascontiguousarray(c[:, :3])
        um.CreateDisplayColorPrimvar(UsdGeom.Tokens.vertex).Set(Vt.Vec3fArray.FromNumpy(rgb))
        if c.shape[1] == 4 and float(c[:, 3].min()) < 1.0:
            alpha = np.ascontiguousarray(c[:, 3])
            um.CreateDisplayOpacityPrimvar(UsdGeom.Tokens.vertex).Set(
                Vt.FloatArray.FromNumpy(alpha)
            )
        self.vertex_colored += 1
        return True

    def node(
        self,
        parent: Sdf.Path,
        index: int,
        mat_scope: Sdf.Path,
        seen: set[int],
        skinned_root: Sdf.Path,
    ) -> None:
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
            self.mesh(xf.GetPath(), n, as_int(n["mesh"]), mat_scope, skinned_root)
        for c in n.get("children", []) or []:
            self.node(xf.GetPath(), as_int(c), mat_scope, seen, skinned_root)
