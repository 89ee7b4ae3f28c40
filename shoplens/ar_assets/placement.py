"""How a worn product will sit on the shopper in the try-on page (``tryon.py``).

For the ``face``, ``head``, ``wrist`` and ``foot`` placements the upload report
gets ``stats.tryon``: what kind of item the model is taken for, the body
landmark it is anchored on, the model axis that points "forward", the point
of the model put on the landmark and the scale it will get; and warnings
(``TRYON_*``) where the model cannot be worn sensibly. The try-on page reads the
same ``stats.tryon`` of the stored row, so the report says what the page does.

Conventions are glTF's: metres, +Y up, the product's front facing +Z. A watch
is modelled dial to the front (+Z) with the wrist passing through its band
along X; a shoe stands on y = 0 with its toe along X or Z (the longest
horizontal side; which end is the toe is read from the geometry: the heel's
collar is higher than the toe box).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from shoplens.ar_assets.gltf import Gltf, GltfFormatError, as_int, read_accessor, walk_nodes
from shoplens.ar_assets.report import Report

WEARABLE = ("face", "head", "wrist", "foot")
# Interpupillary distance of an adult (mean ~63 mm): the face's metric anchor.
IPD_M = 0.063
# Sensible largest size per kind (metres): outside, the model is warned about.
SIZE_RANGE: dict[str, tuple[float, float, str]] = {
    "glasses": (0.10, 0.20, "width (x)"),
    "earrings": (0.005, 0.08, "largest side"),
    "hat": (0.14, 0.50, "width (x)"),
    "watch": (0.02, 0.12, "loop diameter (y, z)"),
    "shoe": (0.12, 0.40, "length"),
}
AXES = "xyz"
FACE_SCALE = f"true to size: the face's interpupillary distance is taken as {IPD_M * 1000:.0f} mm"
MAX_POINTS = 200_000


@dataclass(frozen=True)
class Fit:
    """Where and how the try-on page puts the model on the body."""

    kind: str  # glasses | earrings | hat | watch | shoe
    landmark: str  # the tracked body point, in words (tracker and landmark numbers)
    forward: list[float]  # model-space unit axis that faces away from the wearer / the toe
    forward_axis: str  # the same as text: "+z", "-x", ...
    point_m: list[float]  # the model point put on the landmark (model space, metres)
    scale: str  # what the size on screen comes from, in words

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _points(g: Gltf) -> npt.NDArray[np.float64] | None:
    """World-space vertex positions of the default scene (None if unreadable, e.g. Draco)."""
    meshes, nodes = g.items("meshes"), g.items("nodes")
    chunks: list[npt.NDArray[np.float64]] = []
    total = 0
    for ni, world in walk_nodes(g):
        mi = as_int(nodes[ni].get("mesh"))
        if not 0 <= mi < len(meshes):
            continue
        for prim in meshes[mi].get("primitives", []) or []:
            ai = as_int((prim.get("attributes") or {}).get("POSITION"))
            try:
                pos = np.asarray(read_accessor(g, ai), dtype=np.float64)[:, :3]
            except (GltfFormatError, ValueError, IndexError):
                return None
            if pos.size == 0 or not np.abs(pos).any():  # no bufferView: compressed
                return None
            pos = pos[:: max(1, len(pos) // MAX_POINTS)]
            homo = np.hstack([pos, np.ones((len(pos), 1))])
            chunks.append((world @ homo.T).T[:, :3])
            total += len(pos)
    return np.vstack(chunks) if chunks and total else None


def _axis(sign: float, i: int) -> tuple[list[float], str]:
    vec = [0.0, 0.0, 0.0]
    vec[i] = 1.0 if sign >= 0 else -1.0
    return vec, ("+" if sign >= 0 else "-") + AXES[i]


def _toe_sign(points: npt.NDArray[np.float64] | None, i: int, lo: float, hi: float) -> float:
    """+1 when the toe is at the high end of axis ``i``: the heel end stands taller."""
    if points is None or hi <= lo:
        return 1.0
    t = (points[:, i] - lo) / (hi - lo)
    low_end, high_end = points[t < 0.3, 1], points[t > 0.7, 1]
    if not len(low_end) or not len(high_end):
        return 1.0
    return 1.0 if high_end.max() < low_end.max() else -1.0


def fit_for(
    placement: str,
    lo: list[float],
    hi: list[float],
    points: npt.NDArray[np.float64] | None = None,
) -> Fit:
    """The fit of a model with bounds ``lo``..``hi`` (metres) worn at ``placement``."""
    lo_a, hi_a = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    dims, c = hi_a - lo_a, (lo_a + hi_a) / 2
    if placement == "face":
        if max(dims) <= SIZE_RANGE["earrings"][1] and dims[0] < SIZE_RANGE["glasses"][0]:
            return Fit(
                "earrings",
                "face mesh 93 and 323 (the face outline below the ears), one copy on each side",
                [0.0, 0.0, 1.0],
                "+z",
                [float(c[0]), float(hi_a[1]), float(c[2])],
                FACE_SCALE,
            )
        return Fit(
            "glasses",
            "face mesh eyes 33/133 and 362/263: the lenses' centre between the eyes, the frame's "
            "front 12 mm in front of them; x along the eye line",
            [0.0, 0.0, 1.0],
            "+z",
            [float(c[0]), float(c[1]), float(hi_a[2])],  # front centre
            f"{FACE_SCALE} (a {dims[0] * 1000:.0f} mm wide frame is "
            f"{dims[0] / IPD_M:.1f} times it)",
        )
    if placement == "head":
        return Fit(
            "hat",
            "face mesh 10 (top of the forehead), the hat's bottom centre on the crown",
            [0.0, 0.0, 1.0],
            "+z",
            [float(c[0]), float(lo_a[1]), float(c[2])],
            FACE_SCALE,
        )
    if placement == "wrist":
        return Fit(
            "watch",
            "hands 0 (the wrist), 2 cm up the forearm; x along the forearm (wrist to middle "
            "finger), the dial (+z) on the back of the hand",
            [0.0, 0.0, 1.0],
            "+z",
            [float(v) for v in c],
            "true to size: hands' world landmarks are in metres",
        )
    # foot: the longest horizontal side is the shoe's length
    i = 0 if dims[0] >= dims[2] else 2
    forward, name = _axis(_toe_sign(points, i, float(lo_a[i]), float(hi_a[i])), i)
    return Fit(
        "shoe",
        "pose 27/28 (ankles), 29/30 (heels), 31/32 (toes): one shoe on each foot",
        forward,
        name,
        [float(c[0]), float(lo_a[1]), float(c[2])],  # the sole's centre
        "true to size: pose's world landmarks are in metres",
    )


def _size_of(fit: Fit, dims: npt.NDArray[np.float64]) -> float:
    if fit.kind in ("glasses", "hat"):
        return float(dims[0])
    if fit.kind == "watch":
        return float(max(dims[1], dims[2]))
    if fit.kind == "shoe":
        return float(max(dims[0], dims[2]))
    return float(max(dims))


def analyse(g: Gltf | None, placement: str, report: Report) -> Fit | None:
    """Fill ``report.stats["tryon"]`` and warn where the model cannot be worn sensibly."""
    if placement not in WEARABLE:
        return None
    bounds = report.stats.get("bounds_m")
    if not isinstance(bounds, dict):
        report.warn("TRYON_NO_BOUNDS", "the model's size is unknown: try-on cannot scale it")
        return None
    lo, hi = list(bounds["min"]), list(bounds["max"])
    fit = fit_for(placement, lo, hi, _points(g) if g is not None else None)
    report.stats["tryon"] = fit.to_dict()
    dims = np.asarray(hi, dtype=np.float64) - np.asarray(lo, dtype=np.float64)
    low, high, what = SIZE_RANGE[fit.kind]
    size = _size_of(fit, dims)
    if not low <= size <= high:
        report.warn(
            "TRYON_IMPLAUSIBLE_SIZE",
            f"as {fit.kind}, its {what} of {size:.3f} m is not wearable (expected "
            f"{low}-{high} m): try-on shows it true to size; is the model in metres?",
        )
    smallest = int(np.argmin(dims))
    if fit.kind == "watch" and smallest != 0:
        report.warn(
            "TRYON_WRIST_AXIS",
            f"the band's opening seems to face {AXES[smallest]} (its thinnest side), not x: "
            "the wrist passes along x through the band, dial to the front (+z)",
        )
    if fit.kind == "glasses" and dims[2] > dims[0] * 1.5 and dims[0] < dims[2]:
        report.warn(
            "TRYON_GLASSES_AXIS",
            "the glasses are deeper (z) than wide (x): the front must face +z with the "
            "lenses side by side along x",
        )
    report.info(
        "TRYON_PLACEMENT",
        f"try-on shows it as {fit.kind} on {fit.landmark}; forward is {fit.forward_axis}; "
        f"model point {[round(v, 3) for v in fit.point_m]} m goes on the landmark; {fit.scale}",
    )
    return fit


def stored_fit(placement: str, report: dict[str, Any]) -> dict[str, Any] | None:
    """The fit for a stored row: its report's ``stats.tryon``, or one from its bounds
    (rows stored before try-on existed), None if not wearable or of unknown size."""
    if placement not in WEARABLE:
        return None
    stats = report.get("stats") if isinstance(report, dict) else None
    stats = stats if isinstance(stats, dict) else {}
    fit = stats.get("tryon")
    if isinstance(fit, dict):
        return fit
    bounds = stats.get("bounds_m")
    if not isinstance(bounds, dict):
        return None
    return fit_for(placement, list(bounds["min"]), list(bounds["max"])).to_dict()
