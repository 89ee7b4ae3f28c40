"""Hostile 3D uploads: broken GLB framing and JSON, accessors and views out of
range, URIs escaping the upload, and zips that traverse, link, bomb or lie.
"""

from __future__ import annotations

import io
import json
import stat
import struct
import zipfile
from collections.abc import Callable, Sequence
from typing import Any

from tests.ar_assets import models
from tests.hardening.corpus import Case

Doc = dict[str, Any]


def _glb_raw(json_bytes: bytes, blob: bytes | None = None, *, total: int | None = None) -> bytes:
    js = json_bytes + b" " * (-len(json_bytes) % 4)
    out = struct.pack("<II", len(js), 0x4E4F534A) + js
    if blob is not None:
        b = blob + b"\x00" * (-len(blob) % 4)
        out += struct.pack("<II", len(b), 0x004E4942) + b
    return struct.pack("<4sII", b"glTF", 2, 12 + len(out) if total is None else total) + out


def _mut(fn: Callable[[Doc, bytes], tuple[Doc, bytes | None]]) -> bytes:
    return models.mutate(fn)


def _set(path: str, value: Any) -> Callable[[Doc, bytes], tuple[Doc, bytes | None]]:
    def fn(doc: Doc, blob: bytes) -> tuple[Doc, bytes | None]:
        node: Any = doc
        keys = path.split(".")
        for k in keys[:-1]:
            node = node[int(k)] if k.isdigit() else node[k]
        last = keys[-1]
        if last.isdigit():
            node[int(last)] = value
        else:
            node[last] = value
        return doc, blob

    return fn


def _zip(entries: Sequence[tuple[str | zipfile.ZipInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries:
            z.writestr(name, data)
    return buf.getvalue()


def _gltf_doc_with(fn: Callable[[Doc], Doc]) -> bytes:
    return models.gltf_zip(fn)


def _uri(uri: str) -> Callable[[Doc], Doc]:
    def fn(doc: Doc) -> Doc:
        doc["images"][0]["uri"] = uri
        return doc

    return fn


def _buffer_uri(uri: str) -> Callable[[Doc], Doc]:
    def fn(doc: Doc) -> Doc:
        doc["buffers"][0]["uri"] = uri
        return doc

    return fn


def _symlink(name: str, target: bytes) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target


def malformed_3d() -> list[Case]:
    """At least 50 hostile 3D uploads: GLB structure, JSON, accessors, URIs, zips."""
    good = models.box_glb()
    doc, blob = models.box()
    js = json.dumps(doc).encode()
    deep = json.dumps({**doc, "extras": "X"}).replace('"X"', "[" * 50_000 + "]" * 50_000)
    wide = {**doc, "extras": {f"key-{i:07d}": i for i in range(600_000)}}  # > 8 MiB
    gltf_zip = models.gltf_zip()
    cases: list[Case] = [
        ("empty", b""),
        ("magic-only", b"glTF"),
        ("header-only", good[:12]),
        ("truncated-json", good[:40]),
        ("truncated-half", good[: len(good) // 2]),
        ("truncated-last-byte", good[:-1]),
        ("version-1", b"glTF" + struct.pack("<I", 1) + good[8:]),
        ("version-3", b"glTF" + struct.pack("<I", 3) + good[8:]),
        ("total-length-lie-big", _glb_raw(js, blob, total=0x7FFFFFFF)),
        ("total-length-lie-small", _glb_raw(js, blob, total=20)),
        ("json-chunk-len-huge", good[:12] + struct.pack("<I", 0x7FFFFFF0) + good[16:]),
        ("json-chunk-len-zero", good[:12] + struct.pack("<I", 0) + good[16:]),
        ("json-chunk-len-unaligned", good[:12] + struct.pack("<I", len(js) + 1) + good[16:]),
        (
            "bin-chunk-first",
            _glb_raw(b"", None)[:12] + struct.pack("<II", 4, 0x004E4942) + b"\x00" * 4,
        ),
        (
            "bin-chunk-len-huge",
            _glb_raw(js, blob)[: 20 + len(js) + (-len(js) % 4)]
            + struct.pack("<II", 0x7FFFFFF0, 0x004E4942)
            + blob,
        ),
        ("two-json-chunks", _glb_raw(js, None) + struct.pack("<II", 4, 0x4E4F534A) + b"{}  "),
        ("json-not-utf8", _glb_raw(b"\xff\xfe" + js, blob)),
        ("json-invalid", _glb_raw(b"{not json", blob)),
        ("json-array-root", _glb_raw(b"[1,2,3]", blob)),
        ("json-no-asset", _glb_raw(b'{"scenes": []}', blob)),
        (
            "json-version-1",
            _glb_raw(json.dumps({**doc, "asset": {"version": "1.0"}}).encode(), blob),
        ),
        ("json-deeply-nested", _glb_raw(deep.encode(), blob)),
        ("json-huge-object", _glb_raw(json.dumps(wide).encode(), blob)),
        ("json-nan", _glb_raw(js.replace(b'"version"', b'"nan": NaN, "version"'), blob)),
        ("accessor-count-huge", _mut(_set("accessors.1.count", 2**31))),
        ("accessor-count-negative", _mut(_set("accessors.1.count", -5))),
        ("accessor-offset-out-of-view", _mut(_set("accessors.1.byteOffset", 10_000_000))),
        ("accessor-bad-component", _mut(_set("accessors.1.componentType", 1234))),
        ("accessor-bad-type", _mut(_set("accessors.1.type", "VEC7"))),
        ("accessor-view-missing", _mut(_set("accessors.1.bufferView", 99))),
        ("accessor-view-string", _mut(_set("accessors.1.bufferView", "0"))),
        ("view-range-out-of-buffer", _mut(_set("bufferViews.1.byteLength", 10_000_000))),
        ("view-offset-negative", _mut(_set("bufferViews.1.byteOffset", -4))),
        ("view-buffer-missing", _mut(_set("bufferViews.1.buffer", 7))),
        ("buffer-length-lie", _mut(_set("buffers.0.byteLength", 2**40))),
        ("buffer-length-string", _mut(_set("buffers.0.byteLength", "big"))),
        ("mesh-index-missing", _mut(_set("nodes.0.mesh", 42))),
        ("node-self-child", _mut(_set("nodes.0.children", [0]))),
        ("scene-node-missing", _mut(_set("scenes.0.nodes", [9999]))),
        ("primitives-not-list", _mut(_set("meshes.0.primitives", {"a": 1}))),
        ("material-missing", _mut(_set("meshes.0.primitives.0.material", 77))),
        ("image-view-missing", _mut(_set("images.0.bufferView", 55))),
        ("required-unknown-ext", _mut(_set("extensionsRequired", ["EXT_does_not_exist"]))),
        ("glb-uri-http", _mut(_set("images.0", {"uri": "http://127.0.0.1:9/t.png"}))),
        ("glb-uri-file", _mut(_set("images.0", {"uri": "file:///etc/passwd"}))),
        ("glb-uri-traversal", _mut(_set("images.0", {"uri": "../../etc/passwd"}))),
        ("glb-uri-absolute", _mut(_set("images.0", {"uri": "/etc/passwd"}))),
        (
            "glb-buffer-uri-http",
            _mut(_set("buffers.0", {"uri": "https://127.0.0.1:9/b.bin", "byteLength": 10})),
        ),
        ("glb-data-uri-not-base64", _mut(_set("images.0", {"uri": "data:image/png,rawbytes"}))),
        ("glb-data-uri-bad-base64", _mut(_set("images.0", {"uri": "data:image/png;base64,!!!!"}))),
        (
            "glb-data-uri-too-big",
            _mut(
                _set(
                    "images.0",
                    {"uri": "data:image/png;base64," + "A" * (17 * 1024 * 1024 * 4 // 3)},
                )
            ),
        ),
        ("glb-buffer-no-bin", _glb_raw(js, None)),
        (
            "glb-texture-garbage",
            _mut(
                lambda d, b: (
                    d,
                    b[: d["bufferViews"][4]["byteOffset"]] + b"\x89PNG\r\n\x1a\n" + b"\x00" * 64,
                )
            ),
        ),
        ("zip-empty", _zip([])),
        ("zip-truncated", gltf_zip[: len(gltf_zip) // 2]),
        ("zip-no-gltf", _zip([("readme.txt", b"hi")])),
        ("zip-two-gltf", _zip([("a.gltf", js), ("b.gltf", js)])),
        ("zip-traversal", models.gltf_zip(extra={"../../evil.txt": b"pwned"})),
        ("zip-traversal-deep", models.gltf_zip(extra={"model/../../../tmp/evil.txt": b"pwned"})),
        ("zip-absolute", models.gltf_zip(extra={"/tmp/shoplens-evil.txt": b"pwned"})),
        ("zip-backslash", models.gltf_zip(extra={"..\\..\\evil.txt": b"pwned"})),
        ("zip-drive-letter", models.gltf_zip(extra={"C:/evil.txt": b"pwned"})),
        (
            "zip-symlink",
            _zip([("model/model.gltf", js), _symlink("model/texture.png", b"/etc/passwd")]),
        ),
        ("zip-symlink-dir", _zip([_symlink("model", b"/tmp"), ("model/model.gltf", js)])),
        (
            "zip-bomb-ratio",
            _zip([("model/model.gltf", js), ("model/zeros.bin", b"\x00" * (24 << 20))]),
        ),
        (
            "zip-bomb-many",
            _zip(
                [("model/model.gltf", js)]
                + [(f"model/z{i}.bin", b"\x00" * (1 << 19)) for i in range(300)]
            ),
        ),
        (
            "zip-many-entries",
            _zip([("model/model.gltf", js)] + [(f"e/{i}", b"") for i in range(2100)]),
        ),
        ("zip-gltf-uri-http", _gltf_doc_with(_uri("http://127.0.0.1:9/t.png"))),
        ("zip-gltf-uri-https", _gltf_doc_with(_uri("https://127.0.0.1:9/t.png"))),
        ("zip-gltf-uri-file", _gltf_doc_with(_uri("file:///etc/passwd"))),
        ("zip-gltf-uri-traversal", _gltf_doc_with(_uri("../texture.png"))),
        ("zip-gltf-uri-encoded-traversal", _gltf_doc_with(_uri("%2e%2e/%2e%2e/etc/passwd"))),
        ("zip-gltf-uri-absolute", _gltf_doc_with(_uri("/etc/passwd"))),
        ("zip-gltf-uri-missing", _gltf_doc_with(_uri("nope.png"))),
        ("zip-gltf-buffer-http", _gltf_doc_with(_buffer_uri("http://127.0.0.1:9/model.bin"))),
        ("zip-gltf-buffer-missing", _gltf_doc_with(_buffer_uri("gone.bin"))),
        ("zip-gltf-deep-json", _zip([("m.gltf", deep.encode())])),
        ("zip-gltf-not-json", _zip([("m.gltf", b"\x00\x01garbage")])),
        ("zip-usdz-only", _zip([("model.usda", b"#usda 1.0\n")])),
        ("zip-encrypted-flag", _encrypted_zip(js)),
        ("not-a-model", b"just some text, not a model"),
        ("png-as-model", models.checker_png()),
    ]
    return cases


def _encrypted_zip(js: bytes) -> bytes:
    """A zip whose entry claims to be encrypted (flag bit 0) without real encryption."""
    data = bytearray(_zip([("model/model.gltf", js)]))
    i = data.find(b"PK\x01\x02")  # central directory entry: flags at offset 8
    data[i + 8] |= 1
    j = data.find(b"PK\x03\x04")
    data[j + 6] |= 1
    return bytes(data)
