"""Reading glTF 2.0: the GLB container, the JSON, buffers and accessors.

Only what Shoplens needs: the structure checks in ``validate`` and the mesh
data for the USDZ conversion. Every reader bounds-checks before slicing.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

GLB_MAGIC = b"glTF"
CHUNK_JSON = 0x4E4F534A
CHUNK_BIN = 0x004E4942
# Values in the JSON (array items, object members, all levels). Real assets have
# thousands; millions only make every later check slow. A data: URI counts as one.
MAX_JSON_ITEMS = 500_000

COMPONENT_DTYPES: dict[int, str] = {
    5120: "i1",
    5121: "u1",
    5122: "<i2",
    5123: "<u2",
    5125: "<u4",
    5126: "<f4",
}
TYPE_SIZES: dict[str, int] = {
    "SCALAR": 1,
    "VEC2": 2,
    "VEC3": 3,
    "VEC4": 4,
    "MAT2": 4,
    "MAT3": 9,
    "MAT4": 16,
}


class GltfFormatError(Exception):
    """The container or JSON cannot be read at all."""

    def __init__(self, code: str, message: str, pointer: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.pointer = pointer


@dataclass
class Gltf:
    """A parsed glTF: its JSON and the bytes of each buffer (None if unavailable)."""

    doc: dict[str, Any]
    buffers: list[bytes | None] = field(default_factory=list)

    def items(self, key: str) -> list[dict[str, Any]]:
        value = self.doc.get(key, [])
        if not isinstance(value, list):
            return []
        return [v if isinstance(v, dict) else {} for v in value]


def split_glb(data: bytes) -> tuple[bytes, bytes | None]:
    """JSON chunk and optional BIN chunk of a GLB; GltfFormatError if malformed."""
    if len(data) < 12:
        raise GltfFormatError("GLB_UNEXPECTED_END_OF_HEADER", "the GLB header is truncated")
    magic, version, length = struct.unpack_from("<4sII", data, 0)
    if magic != GLB_MAGIC:
        raise GltfFormatError("GLB_INVALID_MAGIC", "not a GLB file (magic is not 'glTF')")
    if version != 2:
        raise GltfFormatError("GLB_INVALID_VERSION", f"GLB version {version} is not 2")
    if length != len(data):
        what = "truncated" if length > len(data) else "followed by extra bytes"
        raise GltfFormatError(
            "GLB_LENGTH_MISMATCH",
            f"the GLB header declares {length} bytes but the file has {len(data)} ({what})",
        )
    offset = 12
    chunks: list[tuple[int, bytes]] = []
    while offset < len(data):
        if offset + 8 > len(data):
            raise GltfFormatError(
                "GLB_UNEXPECTED_END_OF_CHUNK_HEADER", f"chunk header truncated at byte {offset}"
            )
        clen, ctype = struct.unpack_from("<II", data, offset)
        start = offset + 8
        if start + clen > len(data):
            raise GltfFormatError(
                "GLB_UNEXPECTED_END_OF_CHUNK_DATA",
                f"chunk at byte {offset} declares {clen} bytes but the file ends first",
            )
        if clen % 4:
            raise GltfFormatError("GLB_CHUNK_LENGTH_UNALIGNED", f"chunk at byte {offset} length")
        chunks.append((ctype, data[start : start + clen]))
        offset = start + clen
    if not chunks or chunks[0][0] != CHUNK_JSON:
        raise GltfFormatError("GLB_UNEXPECTED_FIRST_CHUNK", "the first GLB chunk must be JSON")
    bin_chunk: bytes | None = None
    for i, (ctype, body) in enumerate(chunks[1:], start=1):
        if ctype == CHUNK_BIN:
            if i != 1 or bin_chunk is not None:
                raise GltfFormatError(
                    "GLB_UNEXPECTED_BIN_CHUNK", "the BIN chunk must be the second chunk, once"
                )
            bin_chunk = body
        elif ctype == CHUNK_JSON:
            raise GltfFormatError("GLB_DUPLICATE_CHUNK", "more than one JSON chunk")
        # Unknown chunk types are allowed by the spec and ignored.
    return chunks[0][1], bin_chunk


def _too_many_items(doc: Any, limit: int) -> bool:
    """True when the JSON holds more than ``limit`` values (iterative: no recursion)."""
    count = 0
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            count += len(node)
            stack.extend(v for v in node.values() if isinstance(v, dict | list))
        elif isinstance(node, list):
            count += len(node)
            stack.extend(v for v in node if isinstance(v, dict | list))
        if count > limit:
            return True
    return False


def parse_json(raw: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(raw.decode("utf-8").rstrip(" \x00"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GltfFormatError("INVALID_JSON", f"the glTF JSON does not parse: {exc}") from exc
    except RecursionError:
        # Hostile nesting ([[[[...]]]]) blows the decoder's stack: a 422, never a 500.
        raise GltfFormatError(
            "JSON_TOO_DEEP", "the glTF JSON is nested too deeply to be a real asset"
        ) from None
    if not isinstance(doc, dict):
        raise GltfFormatError("INVALID_JSON_ROOT", "the glTF JSON root is not an object")
    if _too_many_items(doc, MAX_JSON_ITEMS):
        raise GltfFormatError(
            "JSON_TOO_LARGE", f"the glTF JSON holds more than {MAX_JSON_ITEMS:,} values"
        )
    asset = doc.get("asset")
    if not isinstance(asset, dict) or not str(asset.get("version", "")).startswith("2."):
        raise GltfFormatError(
            "UNSUPPORTED_VERSION", "asset.version must be 2.x (glTF 2.0)", "/asset/version"
        )
    return doc


def as_int(value: Any, default: int = -1) -> int:
    """An int field of the JSON, or ``default`` when missing or not an integer."""
    if isinstance(value, bool) or not isinstance(value, int):
        return default
    return value


def view_bytes(g: Gltf, view_index: int) -> tuple[bytes, int] | None:
    """(bytes, byteStride) of a bufferView, or None if it cannot be resolved."""
    views = g.items("bufferViews")
    if not 0 <= view_index < len(views):
        return None
    view = views[view_index]
    bi = as_int(view.get("buffer"))
    if not 0 <= bi < len(g.buffers):
        return None
    buf = g.buffers[bi]
    if buf is None:
        return None
    off = as_int(view.get("byteOffset"), 0)
    length = as_int(view.get("byteLength"))
    if off < 0 or length < 0 or off + length > len(buf):
        return None
    return buf[off : off + length], as_int(view.get("byteStride"), 0)


def read_accessor(g: Gltf, index: int) -> npt.NDArray[Any]:
    """Accessor data as an (count, ncomp) array, normalised ints mapped to floats.

    Raises GltfFormatError for anything unreadable (callers validate first).
    """
    accessors = g.items("accessors")
    if not 0 <= index < len(accessors):
        raise GltfFormatError("ACCESSOR_INDEX", f"accessor {index} does not exist")
    acc = accessors[index]
    dtype = np.dtype(COMPONENT_DTYPES.get(as_int(acc.get("componentType")), "<f4"))
    ncomp = TYPE_SIZES.get(str(acc.get("type")), 1)
    count = as_int(acc.get("count"), 0)
    elem = dtype.itemsize * ncomp
    vi = as_int(acc.get("bufferView"))
    if vi < 0:
        out = np.zeros((count, ncomp), dtype=dtype)
    else:
        resolved = view_bytes(g, vi)
        if resolved is None:
            raise GltfFormatError("ACCESSOR_VIEW", f"accessor {index} has no readable bufferView")
        raw, stride = resolved
        stride = stride or elem
        start = as_int(acc.get("byteOffset"), 0)
        if count and start + (count - 1) * stride + elem > len(raw):
            raise GltfFormatError("ACCESSOR_TOO_LONG", f"accessor {index} overruns its bufferView")
        if stride == elem:
            out = np.frombuffer(raw, dtype=dtype, count=count * ncomp, offset=start)
            out = out.reshape(count, ncomp)
        else:
            rows = np.lib.stride_tricks.as_strided(
                np.frombuffer(raw, dtype=np.uint8, offset=start),
                shape=(count, elem),
                strides=(stride, 1),
            )
            out = np.frombuffer(rows.tobytes(), dtype=dtype).reshape(count, ncomp)
    sparse = acc.get("sparse")
    if isinstance(sparse, dict):
        out = _apply_sparse(g, out.copy(), sparse, dtype, ncomp)
    if acc.get("normalized") and dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.maximum(out.astype(np.float64) / info.max, -1.0)
    return out


def _apply_sparse(
    g: Gltf, out: npt.NDArray[Any], sparse: dict[str, Any], dtype: np.dtype[Any], ncomp: int
) -> npt.NDArray[Any]:
    n = as_int(sparse.get("count"), 0)
    idx, val = sparse.get("indices", {}), sparse.get("values", {})
    ri = view_bytes(g, as_int(idx.get("bufferView")))
    rv = view_bytes(g, as_int(val.get("bufferView")))
    if ri is None or rv is None:
        raise GltfFormatError("ACCESSOR_SPARSE", "sparse accessor data is unreadable")
    idt = np.dtype(COMPONENT_DTYPES.get(as_int(idx.get("componentType")), "<u4"))
    ids = np.frombuffer(ri[0], dtype=idt, count=n, offset=as_int(idx.get("byteOffset"), 0))
    voff = as_int(val.get("byteOffset"), 0)
    vals = np.frombuffer(rv[0], dtype=dtype, count=n * ncomp, offset=voff)
    if ids.size and int(ids.max()) >= out.shape[0]:
        raise GltfFormatError("ACCESSOR_SPARSE", "sparse index out of range")
    out[ids.astype(np.int64)] = vals.reshape(n, ncomp)
    return out


def node_matrix(node: dict[str, Any]) -> npt.NDArray[np.float64]:
    """Local transform of a node as a 4x4 matrix (column vectors)."""
    m = node.get("matrix")
    if isinstance(m, list) and len(m) == 16:
        return np.array(m, dtype=np.float64).reshape(4, 4).T
    t = np.array(node.get("translation", [0, 0, 0]), dtype=np.float64)
    x, y, z, w = (float(v) for v in node.get("rotation", [0, 0, 0, 1]))
    s = np.array(node.get("scale", [1, 1, 1]), dtype=np.float64)
    r = np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )
    out = np.eye(4)
    out[:3, :3] = r * s[None, :]
    out[:3, 3] = t
    return out


def scene_roots(g: Gltf) -> list[int]:
    scenes = g.items("scenes")
    si = as_int(g.doc.get("scene"), 0)
    if 0 <= si < len(scenes):
        return [as_int(n) for n in scenes[si].get("nodes", []) if isinstance(n, int)]
    # No scene: every node that is nobody's child is a root.
    children = {c for n in g.items("nodes") for c in n.get("children", []) if isinstance(c, int)}
    return [i for i in range(len(g.items("nodes"))) if i not in children]


def walk_nodes(g: Gltf) -> list[tuple[int, npt.NDArray[np.float64]]]:
    """(node index, world matrix) for every node reachable from the default scene."""
    nodes = g.items("nodes")
    out: list[tuple[int, npt.NDArray[np.float64]]] = []
    stack = [(r, np.eye(4)) for r in scene_roots(g)]
    seen: set[int] = set()
    while stack:
        i, parent = stack.pop()
        if not 0 <= i < len(nodes) or i in seen:
            continue  # cycles and bad indices are reported by validate
        seen.add(i)
        world = parent @ node_matrix(nodes[i])
        out.append((i, world))
        stack.extend((as_int(c), world) for c in nodes[i].get("children", []))
    return out


def world_matrices(g: Gltf) -> dict[int, npt.NDArray[np.float64]]:
    """World matrix of every node (scene or not: joints may sit outside the scene)."""
    nodes = g.items("nodes")
    parent: dict[int, int] = {}
    for i, n in enumerate(nodes):
        for c in n.get("children", []) or []:
            if isinstance(c, int) and 0 <= c < len(nodes):
                parent.setdefault(c, i)
    out: dict[int, npt.NDArray[np.float64]] = {}
    for i in range(len(nodes)):
        chain, j = [], i
        while j not in out and j not in chain:
            chain.append(j)
            if j not in parent:
                break
            j = parent[j]
        world = out.get(j, np.eye(4)) if j not in chain else np.eye(4)
        for k in reversed(chain):
            world = world @ node_matrix(nodes[k])
            out[k] = world
    return out


def _skin_matrices(
    g: Gltf, skin: dict[str, Any], worlds: dict[int, npt.NDArray[np.float64]]
) -> npt.NDArray[np.float64]:
    joints = [as_int(j) for j in skin.get("joints", []) or []]
    ibm = np.tile(np.eye(4), (len(joints), 1, 1))
    if "inverseBindMatrices" in skin:
        raw = read_accessor(g, as_int(skin["inverseBindMatrices"])).astype(np.float64)
        if raw.shape == (len(joints), 16):
            ibm = raw.reshape(-1, 4, 4).transpose(0, 2, 1)  # column-major in glTF
    return np.stack([worlds.get(j, np.eye(4)) @ ibm[k] for k, j in enumerate(joints)])


def skin_blend(
    g: Gltf,
    node: dict[str, Any],
    prim: dict[str, Any],
    worlds: dict[int, npt.NDArray[np.float64]],
) -> npt.NDArray[np.float64] | None:
    """Per-vertex skinning matrices (n, 4, 4) of a skinned primitive, None if not skinned.

    Each is the weighted sum of its joints' world x inverse bind matrices, in the
    pose the node tree gives the joints (what viewers show with no animation).
    """
    attrs = prim.get("attributes") or {}
    skins = g.items("skins")
    si = as_int(node.get("skin"))
    if not (0 <= si < len(skins) and "JOINTS_0" in attrs and "WEIGHTS_0" in attrs):
        return None
    mats = _skin_matrices(g, skins[si], worlds)
    n = as_int(g.items("accessors")[as_int(attrs.get("POSITION"))].get("count"), 0)
    acc = np.zeros((n, 4, 4))
    total = np.zeros(n)
    k = 0
    while f"JOINTS_{k}" in attrs and f"WEIGHTS_{k}" in attrs:
        ji = read_accessor(g, as_int(attrs[f"JOINTS_{k}"])).astype(np.int64)
        wi = read_accessor(g, as_int(attrs[f"WEIGHTS_{k}"])).astype(np.float64)
        ji = np.clip(ji, 0, len(mats) - 1)
        for c in range(ji.shape[1]):
            acc += wi[:, c, None, None] * mats[ji[:, c]]
            total += wi[:, c]
        k += 1
    ok = total > 1e-8
    acc[ok] /= total[ok, None, None]  # weights should sum to 1; quantized ones nearly do
    acc[~ok] = np.eye(4)
    return acc


def primitive_points(
    g: Gltf,
    node: dict[str, Any],
    prim: dict[str, Any],
    worlds: dict[int, npt.NDArray[np.float64]],
    world: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.float64], bool]:
    """World-space POSITIONs of a primitive (dequantized) and whether they were skinned.

    A skinned mesh is drawn where its joints put it (``skin_blend``); the glTF
    spec ignores the mesh node's own transform then, so it is not applied.
    """
    attrs = prim.get("attributes") or {}
    pts = read_accessor(g, as_int(attrs.get("POSITION"))).astype(np.float64)[:, :3]
    homo = np.concatenate([pts, np.ones((len(pts), 1))], axis=1)
    blend = skin_blend(g, node, prim, worlds)
    if blend is not None and len(blend) == len(pts):
        return np.einsum("nij,nj->ni", blend, homo)[:, :3], True
    return (homo @ world.T)[:, :3], False


def world_bounds(g: Gltf) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None:
    """Axis-aligned bounds of every vertex of the default scene, in world space.

    From the vertices, not accessor min/max: a box around a rotated part's box
    overstates the size, and a skinned mesh's own coordinates are not where it is.
    Raises GltfFormatError if the geometry cannot be read (Draco/meshopt data).
    """
    worlds = world_matrices(g)
    meshes, nodes = g.items("meshes"), g.items("nodes")
    lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
    for ni, world in walk_nodes(g):
        mi = as_int(nodes[ni].get("mesh"))
        if not 0 <= mi < len(meshes):
            continue
        for prim in meshes[mi].get("primitives", []) or []:
            if not isinstance(prim, dict) or "POSITION" not in (prim.get("attributes") or {}):
                continue
            pts, _ = primitive_points(g, nodes[ni], prim, worlds, world)
            if len(pts):
                lo, hi = np.minimum(lo, pts.min(0)), np.maximum(hi, pts.max(0))
    if not np.isfinite(lo).all():
        return None
    return lo, hi
