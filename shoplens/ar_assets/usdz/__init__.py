"""GLB -> USDZ for iOS Quick Look, with usd-core (pxr).

- ``build``: one plain GLB to one packaged, checked USDZ (the entry point);
- ``geometry``: nodes, meshes, skinned meshes in their rest pose, vertex colours;
- ``materials``: UsdPreviewSurface networks, texture transforms, what is approximated;
- ``textures``: PNG/JPEG files for USD (WebP re-encoded, KTX2 transcoded);
- ``variants``: one USDZ per ``KHR_materials_variants`` entry (Quick Look has no switch).
"""

from shoplens.ar_assets.usdz.build import UsdzFailed, UsdzResult, check, convert, read_glb

__all__ = ["UsdzFailed", "UsdzResult", "check", "convert", "read_glb"]
