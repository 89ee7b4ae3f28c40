"""decode_image: every accepted format, every kind of bad input, EXIF, alpha, crop."""

from __future__ import annotations

import io
import resource
import struct
import zlib

import numpy as np
import pillow_heif
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from shoplens.errors import InvalidImage, ShoplensError, TooLarge, UnsupportedMedia
from shoplens.models.decode import (
    SUPPORTED_FORMATS,
    Crop,
    decode_image,
    encode_jpeg,
    encode_webp,
    sniff_format,
)


def _two_tone(size: tuple[int, int] = (200, 100)) -> Image.Image:
    """Left half red, right half blue: orientation and crops are easy to see."""
    image = Image.new("RGB", size, (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, size[0] // 2, size[1]))
    return image


def _save(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **kwargs)
    return out.getvalue()


def _heic(image: Image.Image) -> bytes:
    out = io.BytesIO()
    pillow_heif.from_pillow(image).save(out, quality=90)
    return out.getvalue()


def _close(pixel: tuple[int, ...], expected: tuple[int, int, int], tol: int = 40) -> bool:
    return all(abs(int(a) - b) <= tol for a, b in zip(pixel, expected, strict=True))


@pytest.mark.parametrize(
    ("fmt", "encode"),
    [
        ("jpeg", lambda im: _save(im, "JPEG", quality=95)),
        ("png", lambda im: _save(im, "PNG")),
        ("webp", lambda im: _save(im, "WEBP", lossless=True)),
        ("gif", lambda im: _save(im, "GIF")),
        ("heif", _heic),
        ("avif", lambda im: _save(im, "AVIF", quality=90)),
    ],
)
def test_each_supported_format_decodes_to_rgb(fmt: str, encode: object) -> None:
    data = encode(_two_tone())  # type: ignore[operator]
    assert sniff_format(data) == fmt
    image = decode_image(data)
    assert image.mode == "RGB"
    assert image.size == (200, 100)
    assert _close(image.getpixel((20, 50)), (255, 0, 0))  # type: ignore[arg-type]
    assert _close(image.getpixel((180, 50)), (0, 0, 255))  # type: ignore[arg-type]


def test_real_photo_decodes(photo_bytes: dict[str, bytes]) -> None:
    image = decode_image(photo_bytes["banana.jpg"])
    assert image.mode == "RGB" and image.size == (348, 348)


def test_exif_orientation_6_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways; display rotated 90 degrees clockwise
    data = _save(_two_tone(), "JPEG", quality=95, exif=exif.tobytes())
    image = decode_image(data)
    assert image.size == (100, 200)
    # Clockwise: the stored left (red) half ends up on top.
    assert _close(image.getpixel((50, 20)), (255, 0, 0))  # type: ignore[arg-type]
    assert _close(image.getpixel((50, 180)), (0, 0, 255))  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_transparency_is_composited_on_white(mode: str) -> None:
    image = Image.new(mode, (40, 40), (0,) * len(mode))  # fully transparent black
    decoded = decode_image(_save(image, "PNG"))
    assert decoded.mode == "RGB"
    assert decoded.getpixel((10, 10)) == (255, 255, 255)


def test_palette_transparency_is_composited_on_white() -> None:
    image = Image.new("P", (40, 40), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.paste(1, (0, 0, 20, 40))  # left half red, right half index 0 = transparent
    decoded = decode_image(_save(image, "PNG", transparency=0))
    assert decoded.getpixel((5, 5)) == (255, 0, 0)
    assert decoded.getpixel((35, 5)) == (255, 255, 255)


def test_gif_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (30, 30), c) for c in ((255, 0, 0), (0, 0, 255))]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    decoded = decode_image(out.getvalue())
    assert _close(decoded.getpixel((15, 15)), (255, 0, 0), tol=5)  # type: ignore[arg-type]


def test_sixteen_bit_grey_png_keeps_its_range() -> None:
    arr = np.full((20, 20), 65535, np.uint16)
    arr[:, :10] = 0
    decoded = decode_image(_save(Image.fromarray(arr), "PNG"))
    assert decoded.getpixel((15, 5)) == (255, 255, 255)
    assert decoded.getpixel((5, 5)) == (0, 0, 0)


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (np.random.default_rng(0).bytes(4096), "not a recognised image format"),
        (b"BM" + bytes(100), "BMP"),
        (b"%PDF-1.7\n" + bytes(100), "PDF"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'></svg>", "SVG"),
        (b"II*\x00" + bytes(100), "TIFF"),
    ],
)
def test_unsupported_bytes_are_415(data: bytes, named: str) -> None:
    with pytest.raises(UnsupportedMedia) as info:
        decode_image(data)
    assert info.value.status == 415
    assert named in info.value.message


def test_empty_upload_is_invalid() -> None:
    with pytest.raises(InvalidImage):
        decode_image(b"")


def test_truncated_jpeg_is_422(photo_bytes: dict[str, bytes]) -> None:
    data = photo_bytes["lemon.jpg"]
    with pytest.raises(InvalidImage) as info:
        decode_image(data[: len(data) // 2])
    assert info.value.status == 422
    assert "truncated or corrupt" in info.value.message


@pytest.mark.parametrize("cut", [20, 60])
def test_truncated_png_is_422(cut: int) -> None:
    data = _save(_two_tone(), "PNG")
    with pytest.raises(InvalidImage):
        decode_image(data[:cut])


def test_corrupt_jpeg_body_is_422() -> None:
    with pytest.raises(InvalidImage):
        decode_image(b"\xff\xd8\xff\xe0" + np.random.default_rng(1).bytes(2000))


def _png_header(width: int, height: int) -> bytes:
    """A valid PNG signature + IHDR claiming a huge size, with a tiny IDAT."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(bytes(1000))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_png_bomb_is_refused_from_its_header_without_allocating() -> None:
    data = _png_header(30_000, 30_000)  # 900 MP: 2.7 GB as RGB
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(TooLarge) as info:
        decode_image(data)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert info.value.status == 413
    assert info.value.code == "image_too_large"
    assert (after - before) < 100_000  # KiB: nowhere near the 2.7 GB a decode would take


def test_own_pixel_limit_is_configurable() -> None:
    data = _save(_two_tone(), "PNG")
    with pytest.raises(TooLarge):
        decode_image(data, max_pixels=199 * 100)
    assert decode_image(data, max_pixels=200 * 100).size == (200, 100)


def test_pillows_own_bomb_error_maps_to_too_large() -> None:
    # Our limit lifted above Pillow's: its DecompressionBombError must still be a 413.
    with pytest.raises(TooLarge) as info:
        decode_image(_png_header(100_000, 100_000), max_pixels=10**12)
    assert info.value.code == "image_too_large"


def test_crop_is_applied_in_display_orientation() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _save(_two_tone(), "JPEG", quality=95, exif=exif.tobytes())
    top = decode_image(data, crop=Crop(0.0, 0.0, 1.0, 0.5))
    assert top.size == (100, 100)
    arr = np.asarray(top, dtype=np.int32)
    assert arr[..., 0].mean() > 200 and arr[..., 2].mean() < 60  # all red


@pytest.mark.parametrize("crop", [None, Crop(0.25, 0.1, 0.5, 0.6)])
def test_draft_decode_keeps_short_side_and_vector(
    photos: dict[str, Image.Image], embedder: object, crop: Crop | None
) -> None:
    from shoplens.models.base import ImageEmbedder

    assert isinstance(embedder, ImageEmbedder)
    # A 12 MP-like photo: the fixture upscaled, saved as a camera would.
    big = photos["pineapple.jpg"].resize((4000, 3000), Image.Resampling.BICUBIC)
    data = _save(big, "JPEG", quality=92)
    full = decode_image(data, crop=crop)
    draft = decode_image(data, crop=crop, draft_size=256)
    assert min(draft.size) >= 256
    assert min(draft.size) < min(full.size) / 2  # a real DCT-scaled decode happened
    vectors = embedder.embed([full, draft])
    assert float(vectors[0] @ vectors[1]) > 0.99


def test_draft_is_skipped_when_the_crop_is_too_small() -> None:
    big = _two_tone((1600, 1200))
    data = _save(big, "JPEG", quality=90)
    crop = Crop(0.0, 0.0, 0.2, 0.2)  # 320 x 240 region
    image = decode_image(data, crop=crop, draft_size=224)
    assert min(image.size) >= 224


def test_draft_ignored_for_non_jpeg() -> None:
    assert decode_image(_save(_two_tone(), "PNG"), draft_size=16).size == (200, 100)


def test_sniff_format_names() -> None:
    assert {"jpeg", "png", "webp", "gif", "heif", "avif"} == SUPPORTED_FORMATS
    assert sniff_format(b"") is None
    assert sniff_format(b"GIF89a" + bytes(10)) == "gif"
    assert sniff_format(b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1heic") == "heif"
    assert sniff_format(b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1avif") == "avif"
    assert sniff_format(b"\x00\x00\x00\x18ftypisom\x00\x00\x00\x00isomavc1") == "mp4"
    assert sniff_format(b"PK\x03\x04rest") == "zip"


@pytest.mark.parametrize("encode", [encode_jpeg, encode_webp])
def test_re_encoders_cap_size_and_drop_metadata(encode: object) -> None:
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"
    exif[0x0112] = 6
    source = decode_image(_save(_two_tone((800, 400)), "JPEG", exif=exif.tobytes()))
    data = encode(source, max_side=300)  # type: ignore[operator]
    again = Image.open(io.BytesIO(data))
    assert max(again.size) == 300 and again.size == (150, 300)
    assert b"SecretCam" not in data
    assert not again.getexif()
    same = encode(source, max_side=None)  # type: ignore[operator]
    assert Image.open(io.BytesIO(same)).size == (400, 800)


def test_re_encoders_flatten_alpha() -> None:
    rgba = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
    data = encode_jpeg(rgba, max_side=None)
    assert Image.open(io.BytesIO(data)).convert("RGB").getpixel((5, 5)) == (255, 255, 255)


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF", "WEBP", "PNG"])
def test_exif_orientation_in_other_containers(fmt: str) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    if fmt == "HEIF":
        out = io.BytesIO()
        pillow_heif.from_pillow(_two_tone()).save(out, quality=90, exif=exif.tobytes())
        data = out.getvalue()
    else:
        data = _save(_two_tone(), fmt, exif=exif.tobytes())
    image = decode_image(data)
    assert image.size == (100, 200)  # rotated once, never twice
    assert _close(image.getpixel((50, 20)), (255, 0, 0))  # type: ignore[arg-type]


_SEEDS = {
    "jpeg": _save(_two_tone((64, 48)), "JPEG", quality=80),
    "png": _save(_two_tone((64, 48)), "PNG"),
    "gif": _save(_two_tone((64, 48)), "GIF"),
    "webp": _save(_two_tone((64, 48)), "WEBP", quality=80),
}


@settings(max_examples=150, deadline=None)
@given(
    fmt=st.sampled_from(sorted(_SEEDS)),
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=8),
    cut=st.integers(1, 10_000),
)
def test_mangled_images_only_raise_client_errors(
    fmt: str, edits: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(_SEEDS[fmt][:cut])
    for pos, value in edits:
        if data:
            data[pos % len(data)] = value
    try:
        image = decode_image(bytes(data))
    except ShoplensError as exc:
        assert exc.status in (413, 415, 422)
    else:
        assert image.mode == "RGB"
