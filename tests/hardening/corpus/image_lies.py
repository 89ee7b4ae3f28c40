# ruff: noqa: E501  (tables of hand-made byte strings read best one case per line)
"""Hand-made hostile images: header lies, decompression bombs, wrong magics and
corrupt chunks of every accepted format, built byte by byte.
"""

from __future__ import annotations

import random
import struct
import zlib

from tests.hardening.corpus import Case


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


def fill(data: bytes, start: int, length: int, value: int) -> bytes:
    """``data`` with ``length`` bytes from ``start`` overwritten by ``value``."""
    b = bytearray(data)
    b[start : start + length] = bytes([value]) * len(b[start : start + length])
    return bytes(b)


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
        ("jpeg-huffman-garbage", fill(jpeg, jpeg.find(b"\xff\xc4") + 5, 40, 0xFF)),
        ("jpeg-quant-zero", fill(jpeg, jpeg.find(b"\xff\xdb") + 5, 64, 0x00)),
        ("jpeg-sof-components-9", fill(jpeg, jpeg.find(b"\xff\xc0") + 9, 1, 9)),
    ]
    return cases
