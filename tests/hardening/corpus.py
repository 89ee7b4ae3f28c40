# ruff: noqa: E501  (tables of hand-made byte strings read best one case per line)
"""Generated corpora of hostile files: malformed images and malformed 3D uploads.

Everything is made here from a few small valid files (deterministic seeds), so
the corpus needs no fixtures on disk and is the same on every run.
"""

from __future__ import annotations

import io
import json
import random
import stat
import struct
import zipfile
import zlib
from collections.abc import Callable, Sequence
from typing import Any

from PIL import Image

from tests.ar_assets import models

Case = tuple[str, bytes]


# ------------------------------------------------------------------ images


def _photo(size: tuple[int, int] = (64, 48)) -> Image.Image:
    img = Image.new("RGB", size)
    px = img.load()
    assert px is not None
    for y in range(size[1]):
        for x in range(size[0]):
            px[x, y] = (x * 4 % 256, y * 5 % 256, (x * y) % 256)
    return img


def _encode(fmt: str, **kw: Any) -> bytes:
    out = io.BytesIO()
    img = _photo()
    if fmt == "HEIF":
        import pillow_heif

        pillow_heif.register_heif_opener()
    if fmt == "GIF":
        img = img.convert("P")
    img.save(out, fmt, **kw)
    return out.getvalue()


def base_images() -> dict[str, bytes]:
    """One small valid file per accepted format (those this Pillow can write)."""
    out: dict[str, bytes] = {}
    for name, fmt in (
        ("jpeg", "JPEG"),
        ("png", "PNG"),
        ("webp", "WEBP"),
        ("gif", "GIF"),
        ("heif", "HEIF"),
        ("avif", "AVIF"),
    ):
        try:
            out[name] = _encode(fmt)
        except (KeyError, OSError, ImportError, ValueError):
            continue  # no encoder here: the hand-made cases below still cover the format
    return out


def _png_chunk(kind: bytes, body: bytes, crc: int | None = None) -> bytes:
    c = zlib.crc32(kind + body) if crc is None else crc
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", c & 0xFFFFFFFF)


PNG_SIG = b"\x89PNG\r\n\x1a\n"


def _png(w: int, h: int, idat: bytes, *, color: int = 0, extra: bytes = b"") -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0)
    return (
        PNG_SIG
        + _png_chunk(b"IHDR", ihdr)
        + extra
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def png_bomb(side: int) -> bytes:
    """A real decompression bomb: side x side grey zeros, a few hundred KB deflated."""
    comp = zlib.compressobj(9)
    row = b"\x00" * (side + 1)  # filter byte + pixels
    parts = [comp.compress(row * 256) for _ in range(side // 256)]
    parts.append(comp.compress(row * (side % 256)))
    parts.append(comp.flush())
    return _png(side, side, b"".join(parts))


def _bitflips(data: bytes, seed: int, n: int) -> bytes:
    rnd = random.Random(seed)
    b = bytearray(data)
    for _ in range(n):
        i = rnd.randrange(len(b))
        b[i] ^= 1 << rnd.randrange(8)
    return bytes(b)


def _fill(data: bytes, start: int, length: int, value: int) -> bytes:
    b = bytearray(data)
    b[start : start + length] = bytes([value]) * len(b[start : start + length])
    return bytes(b)


def _mutations(name: str, data: bytes) -> list[Case]:
    """Truncations, bit flips and overwritten ranges of one valid file (30 cases)."""
    n = len(data)
    cases: list[Case] = []
    for cut in (1, 2, 4, 8, 12, 16, 24, 32, 64, n // 4, n // 2, n * 3 // 4, n - 16, n - 2, n - 1):
        cases.append((f"{name}-trunc-{cut}", data[: max(cut, 1)]))
    for seed in range(8):
        flips = 1 if seed < 4 else 16
        cases.append((f"{name}-bitflip-{seed}x{flips}", _bitflips(data, seed, flips)))
    for start, value in ((4, 0xFF), (12, 0x00), (20, 0xFF), (n // 2, 0x00)):
        cases.append((f"{name}-fill-{start}-{value}", _fill(data, start, 16, value)))
    cases.append((f"{name}-header-only-x2", data[:64] + data[:64]))
    cases.append((f"{name}-doubled", data + data))
    cases.append((f"{name}-garbage-tail", data[: n // 2] + bytes(range(256)) * 4))
    return cases


def _jpeg_with_dims(jpeg: bytes, w: int, h: int) -> bytes:
    b = bytearray(jpeg)
    i = 2
    while i + 9 < len(b):
        if b[i] != 0xFF:
            break
        marker = b[i + 1]
        length = int.from_bytes(b[i + 2 : i + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2):
            b[i + 5 : i + 9] = struct.pack(">HH", h, w)
            return bytes(b)
        i += 2 + length
    return bytes(b)


def _riff(fourcc: bytes, body: bytes, size_lie: int | None = None) -> bytes:
    size = len(body) + 4 if size_lie is None else size_lie
    return b"RIFF" + struct.pack("<I", size) + b"WEBP" + fourcc + body


def _isobmff(*boxes: bytes) -> bytes:
    return b"".join(boxes)


def _box(kind: bytes, body: bytes, size: int | None = None) -> bytes:
    return struct.pack(">I", len(body) + 8 if size is None else size) + kind + body


def _gif(w: int, h: int, body: bytes) -> bytes:
    return b"GIF89a" + struct.pack("<HHBBB", w, h, 0x80, 0, 0) + b"\x00" * 6 + body


def targeted_images(bases: dict[str, bytes]) -> list[Case]:
    """Hand-made lies, bombs, wrong magics and corrupt chunks of every format."""
    grey = zlib.compress(b"\x00" * (4 * 5))
    jpeg = bases["jpeg"]
    png = bases["png"]
    cases: list[Case] = [
        ("empty", b""),
        ("one-byte", b"\xff"),
        ("nul-kb", b"\x00" * 1024),
        ("random-4k", random.Random(7).randbytes(4096)),
        ("text", b"hello, this is not an image\n" * 20),
        ("json", b'{"image": "no"}'),
        ("html", b"<!doctype html><html><body>hi</body></html>"),
        ("svg", b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>'),
        (
            "svg-xxe",
            b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
            b"<svg>&e;</svg>",
        ),
        ("pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\n"),
        ("postscript", b"%!PS-Adobe-3.0\n"),
        ("bmp", b"BM" + b"\x00" * 60),
        ("tiff-le", b"II*\x00\x08\x00\x00\x00" + b"\x00" * 32),
        ("tiff-be", b"MM\x00*\x00\x00\x00\x08" + b"\x00" * 32),
        ("ico", b"\x00\x00\x01\x00\x01\x00" + b"\x00" * 32),
        ("psd", b"8BPS\x00\x01" + b"\x00" * 32),
        ("zip", b"PK\x03\x04" + b"\x00" * 40),
        ("gzip", b"\x1f\x8b\x08\x00" + b"\x00" * 20),
        ("glb", b"glTF\x02\x00\x00\x00\x0c\x00\x00\x00"),
        ("jxl", b"\xff\x0a" + b"\x00" * 20),
        ("jp2", b"\x00\x00\x00\x0cjP  \r\n\x87\n" + b"\x00" * 20),
        ("mp4", _box(b"ftyp", b"isom\x00\x00\x02\x00isomiso2mp41") + _box(b"mdat", b"\x00" * 64)),
        ("quicktime", _box(b"ftyp", b"qt  \x00\x00\x00\x00qt  ")),
        # magic of one format, body of another
        ("png-magic-jpeg-body", PNG_SIG + jpeg[8:]),
        ("jpeg-magic-png-body", b"\xff\xd8\xff" + png[3:]),
        ("gif-magic-png-body", b"GIF89a" + png[6:]),
        ("webp-magic-jpeg-body", _riff(b"VP8 ", jpeg)),
        ("heic-brand-jpeg-body", _box(b"ftyp", b"heic\x00\x00\x00\x00mif1heic") + jpeg),
        ("avif-brand-png-body", _box(b"ftyp", b"avif\x00\x00\x00\x00mif1avif") + png),
        # header lies about the size
        ("png-huge-dims", _png(100_000, 100_000, grey)),
        ("png-max-dims", _png(0x7FFFFFFF, 0x7FFFFFFF, grey)),
        ("png-zero-width", _png(0, 10, grey)),
        ("png-zero-height", _png(10, 0, grey)),
        ("png-76mp", _png(10_000, 7_600, grey)),
        ("png-dims-lie-small", _png(4, 5, zlib.compress(b"\x00" * 100_000))),
        ("png-bomb-10k", png_bomb(10_000)),
        ("jpeg-huge-dims", _jpeg_with_dims(jpeg, 65_000, 65_000)),
        ("jpeg-zero-dims", _jpeg_with_dims(jpeg, 0, 0)),
        ("jpeg-9k-by-9k", _jpeg_with_dims(jpeg, 9_000, 9_000)),
        (
            "gif-huge-screen",
            _gif(65_535, 65_535, b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"),
        ),
        ("gif-zero-screen", _gif(0, 0, b";")),
        (
            "gif-bad-lzw",
            _gif(4, 4, b",\x00\x00\x00\x00\x04\x00\x04\x00\x00\x0b\x05\xff\xff\xff\xff\xff\x00;"),
        ),
        ("gif-no-image", _gif(4, 4, b";")),
        ("gif-lzw-size-13", _gif(4, 4, b",\x00\x00\x00\x00\x04\x00\x04\x00\x00\x0d\x02D\x01\x00;")),
        ("webp-riff-size-lie", _riff(b"VP8 ", bases.get("webp", b"")[20:], size_lie=0xFFFFFFF0)),
        ("webp-vp8-len-lie", _riff(b"VP8 ", struct.pack("<I", 0x7FFFFFFF) + b"\x00" * 32)),
        ("webp-vp8l-garbage", _riff(b"VP8L", struct.pack("<I", 16) + b"\x2f" + b"\xff" * 15)),
        (
            "webp-vp8x-huge-canvas",
            _riff(b"VP8X", struct.pack("<I", 10) + b"\x00" * 4 + b"\xff\xff\xff" + b"\xff\xff\xff"),
        ),
        ("webp-empty-chunk", _riff(b"VP8 ", struct.pack("<I", 0))),
        ("heic-ftyp-only", _box(b"ftyp", b"heic\x00\x00\x00\x00mif1heic")),
        ("avif-ftyp-only", _box(b"ftyp", b"avif\x00\x00\x00\x00mif1avif")),
        (
            "heic-box-size-lie",
            _box(b"ftyp", b"heic\x00\x00\x00\x00mif1heic")
            + _box(b"meta", b"\x00" * 8, size=0x7FFFFFFF),
        ),
        (
            "avif-box-size-zero",
            _box(b"ftyp", b"avif\x00\x00\x00\x00mif1avif") + _box(b"meta", b"\x00" * 8, size=0),
        ),
        (
            "avif-box-size-one",
            _box(b"ftyp", b"avif\x00\x00\x00\x00mif1avif")
            + struct.pack(">I", 1)
            + b"meta"
            + b"\xff" * 8,
        ),
        ("heic-ftyp-size-lie", _box(b"ftyp", b"heic\x00\x00\x00\x00mif1heic", size=0xFFFFFFFF)),
        (
            "mif1-no-codec-brand",
            _box(b"ftyp", b"mif1\x00\x00\x00\x00mif1") + _box(b"meta", b"\x00" * 40),
        ),
        # PNG chunk corruption
        (
            "png-bad-ihdr-crc",
            PNG_SIG
            + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 5, 8, 0, 0, 0, 0), crc=0)
            + _png_chunk(b"IDAT", grey)
            + _png_chunk(b"IEND", b""),
        ),
        (
            "png-bad-bitdepth",
            PNG_SIG
            + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 5, 7, 0, 0, 0, 0))
            + _png_chunk(b"IDAT", grey)
            + _png_chunk(b"IEND", b""),
        ),
        (
            "png-bad-colortype",
            PNG_SIG
            + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 5, 8, 9, 0, 0, 0))
            + _png_chunk(b"IDAT", grey)
            + _png_chunk(b"IEND", b""),
        ),
        (
            "png-interlace-7",
            PNG_SIG
            + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 5, 8, 0, 0, 0, 7))
            + _png_chunk(b"IDAT", grey)
            + _png_chunk(b"IEND", b""),
        ),
        ("png-chunk-len-huge", PNG_SIG + struct.pack(">I", 0x7FFFFFFF) + b"IHDR" + b"\x00" * 17),
        (
            "png-no-idat",
            PNG_SIG
            + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 5, 8, 0, 0, 0, 0))
            + _png_chunk(b"IEND", b""),
        ),
        ("png-idat-not-zlib", _png(4, 5, b"\xde\xad\xbe\xef" * 8)),
        ("png-idat-short", _png(64, 64, zlib.compress(b"\x00" * 10))),
        (
            "png-palette-missing",
            PNG_SIG
            + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 5, 8, 3, 0, 0, 0))
            + _png_chunk(b"IDAT", grey)
            + _png_chunk(b"IEND", b""),
        ),
        ("png-unknown-critical", _png(4, 5, grey, extra=_png_chunk(b"ABCD", b"\x00" * 8))),
        (
            "png-huge-text",
            _png(
                4,
                5,
                grey,
                extra=_png_chunk(b"zTXt", b"k\x00\x00" + zlib.compress(b"A" * 2_000_000)),
            ),
        ),
        (
            "png-huge-iccp",
            _png(
                4,
                5,
                grey,
                extra=_png_chunk(b"iCCP", b"p\x00\x00" + zlib.compress(b"\x00" * 2_000_000)),
            ),
        ),
        ("png-bad-exif", _png(4, 5, grey, extra=_png_chunk(b"eXIf", b"MM\x00*\xff\xff\xff\xff"))),
        (
            "png-apng-bad-fctl",
            _png(
                4,
                5,
                grey,
                extra=_png_chunk(b"acTL", struct.pack(">II", 0xFFFFFFFF, 0))
                + _png_chunk(b"fcTL", b"\xff" * 26),
            ),
        ),
        # JPEG segment corruption
        ("jpeg-soi-eoi", b"\xff\xd8\xff\xd9"),
        ("jpeg-no-sos", jpeg[: jpeg.find(b"\xff\xda")] + b"\xff\xd9"),
        ("jpeg-bad-segment-len", jpeg[:2] + b"\xff\xe0\xff\xff" + jpeg[6:]),
        ("jpeg-zero-segment-len", jpeg[:2] + b"\xff\xe0\x00\x00" + jpeg[6:]),
        (
            "jpeg-bad-exif",
            jpeg[:2]
            + b"\xff\xe1\x00\x20Exif\x00\x00MM\x00*\xff\xff\xff\xf0"
            + b"\x00" * 14
            + jpeg[2:],
        ),
        (
            "jpeg-exif-loop",
            jpeg[:2]
            + b"\xff\xe1\x00\x22Exif\x00\x00II*\x00\x08\x00\x00\x00\x01\x00\x12\x01\x03\x00\x01\x00\x00\x00\x09\x00\x08\x00\x00\x00"
            + jpeg[2:],
        ),
        ("jpeg-huffman-garbage", _fill(jpeg, jpeg.find(b"\xff\xc4") + 5, 40, 0xFF)),
        ("jpeg-quant-zero", _fill(jpeg, jpeg.find(b"\xff\xdb") + 5, 64, 0x00)),
        ("jpeg-sof-components-9", _fill(jpeg, jpeg.find(b"\xff\xc0") + 9, 1, 9)),
    ]
    return cases


def malformed_images() -> list[Case]:
    """At least 200 hostile images: mutations of every format plus hand-made lies."""
    bases = base_images()
    cases: list[Case] = []
    for name, data in sorted(bases.items()):
        cases.extend(_mutations(name, data))
    cases.extend(targeted_images(bases))
    return cases


# ------------------------------------------------------------------ 3D files

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
