"""Worn products made in the tests (there is no watch or hat in ../shared/data/ar), the
people photos of ../shared/data/people (never copied into the repository) and a fake
camera stream made from them."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

PEOPLE = Path(__file__).resolve().parents[3] / "shared" / "data" / "people"


def people_photo(name: str) -> Path:
    path = PEOPLE / name
    if not path.is_file():
        pytest.skip("../shared/data/people is not available")
    return path


def _glb(*parts: tuple[object, list[int]]) -> bytes:
    trimesh = pytest.importorskip("trimesh")
    from trimesh.visual.material import PBRMaterial

    meshes = []
    for mesh, rgba in parts:
        mesh.visual = trimesh.visual.TextureVisuals(  # type: ignore[attr-defined]
            material=PBRMaterial(baseColorFactor=rgba, metallicFactor=0.0, roughnessFactor=0.6)
        )
        meshes.append(mesh)
    data: bytes = trimesh.Scene(meshes).export(file_type="glb")
    return data


def watch_glb(opening: str = "x", diameter: float = 0.068) -> bytes:
    """A red band with a blue dial in front (+z); the wrist passes through along ``opening``."""
    trimesh = pytest.importorskip("trimesh")
    r = diameter / 2
    band = trimesh.creation.annulus(r_min=r - 0.006, r_max=r, height=0.022, sections=48)
    dial = trimesh.creation.cylinder(radius=0.02, height=0.01, sections=32)
    dial.apply_translation([0, 0, r + 0.003])  # annulus and dial axes are z: the dial faces +z
    if opening == "x":  # turn the band's axis from z to x, the dial stays in front
        band.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [0, 1, 0]))
    elif opening == "y":  # a watch lying on a table: opening up, dial at the side
        band.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0]))
    return _glb((band, [220, 30, 30, 255]), (dial, [30, 30, 220, 255]))


def hat_glb() -> bytes:
    """A green top hat: brim 24 cm wide on y = 0, crown 11 cm high."""
    trimesh = pytest.importorskip("trimesh")
    upright = trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0])
    brim = trimesh.creation.cylinder(radius=0.12, height=0.01, sections=48)
    brim.apply_transform(upright)
    crown = trimesh.creation.cylinder(radius=0.085, height=0.11, sections=48)
    crown.apply_transform(upright)
    crown.apply_translation([0, 0.06, 0])
    return _glb((brim, [30, 160, 30, 255]), (crown, [30, 160, 30, 255]))


def glasses_glb(width: float = 0.14) -> bytes:
    """Two dark lenses and a bridge, front at z = 0, ``width`` wide."""
    trimesh = pytest.importorskip("trimesh")
    k = width / 0.14
    parts = []
    for x in (-0.034, 0.034):
        lens = trimesh.creation.cylinder(radius=0.026 * k, height=0.004, sections=32)
        lens.apply_translation([x * k, 0, 0])
        parts.append((lens, [20, 20, 20, 255]))
    bar = trimesh.creation.box(extents=[width, 0.006 * k, 0.004])
    bar.apply_translation([0, 0.02 * k, 0])
    parts.append((bar, [20, 20, 20, 255]))
    return _glb(*parts)


def y4m(photo: Path, out: Path, frames: int = 4, max_side: int = 640) -> Path:
    """A Y4M (I420) video of ``frames`` copies of ``photo``: Chromium's fake camera loops it."""
    img = Image.open(photo).convert("RGB")
    k = min(1.0, max_side / max(img.size))
    w, h = (int(img.width * k) // 2 * 2, int(img.height * k) // 2 * 2)
    ycc = np.asarray(img.resize((w, h)).convert("YCbCr"), dtype=np.uint8)
    y = ycc[:, :, 0].tobytes()
    cb = np.asarray(Image.fromarray(ycc[:, :, 1]).resize((w // 2, h // 2))).tobytes()
    cr = np.asarray(Image.fromarray(ycc[:, :, 2]).resize((w // 2, h // 2))).tobytes()
    buf = io.BytesIO()
    buf.write(f"YUV4MPEG2 W{w} H{h} F10:1 Ip A1:1 C420jpeg\n".encode())
    for _ in range(frames):
        buf.write(b"FRAME\n" + y + cb + cr)
    out.write_bytes(buf.getvalue())
    return out
