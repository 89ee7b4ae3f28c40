"""Untrusted image bytes -> one RGB :class:`PIL.Image.Image`, safely.

Every upload and catalog photo goes through :func:`decode_image`. The format
is decided from the bytes (never the file name or Content-Type), only an
allow-list reaches a decoder, and the pixel count is checked from the header
before any pixel is decoded, so a 30 000 x 30 000 PNG costs a few bytes of
memory, not 3.6 GB.
"""

from __future__ import annotations

import functools
import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from shoplens.errors import BadParameter, InvalidImage, TooLarge, UnsupportedMedia

#: Formats :func:`decode_image` accepts (names as :func:`sniff_format` returns them).
SUPPORTED_FORMATS: frozenset[str] = frozenset({"jpeg", "png", "webp", "gif", "heif", "avif"})

#: Content types of the supported formats, for responses and logs.
MIME_TYPES: dict[str, str] = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "gif": "image/gif",
    "heif": "image/heif",
    "avif": "image/avif",
}

# Pillow format names per sniffed format: Image.open only tries this plugin,
# so bytes that look like a PNG can never be handed to, say, the EPS parser.
_PIL_FORMATS: dict[str, list[str]] = {
    "jpeg": ["JPEG", "MPO"],  # phone cameras write MPO (JPEG + depth frames)
    "png": ["PNG"],
    "webp": ["WEBP"],
    "gif": ["GIF"],
    "heif": ["HEIF"],
    "avif": ["AVIF"],
}

_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"}
_AVIF_BRANDS = {b"avif", b"avis"}
_GENERIC_HEIF_BRANDS = {b"mif1", b"msf1", b"mif2"}

# Recognised but refused, so the 415 message can say what was sent.
_OTHER_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"\x00\x00\x01\x00", "ico"),
    (b"8BPS", "psd"),
    (b"%PDF", "pdf"),
    (b"\xff\x0a", "jxl"),
    (b"\x00\x00\x00\x0cJXL ", "jxl"),
    (b"\x00\x00\x00\x0cjP  ", "jpeg2000"),
    (b"PK\x03\x04", "zip"),
    (b"\x1f\x8b", "gzip"),
    (b"glTF", "glb"),
    (b"%!PS", "postscript"),
)


def sniff_format(data: bytes) -> str | None:
    """The format of ``data`` from its magic number, or None when unrecognised.

    Returns a lower-case name. Names outside :data:`SUPPORTED_FORMATS`
    (``"bmp"``, ``"tiff"``, ``"pdf"``, ``"svg"``, ``"mp4"``, ...) mean "recognised
    but refused"; callers deciding acceptance must check membership there.
    """
    head = data[:64]
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp":
        return _sniff_isobmff(data)
    for magic, name in _OTHER_MAGIC:
        if head.startswith(magic):
            return name
    text = head.lstrip().lower()
    if text.startswith((b"<svg", b"<?xml")):
        return "svg" if b"<svg" in data[:4096].lower() else "xml"
    if text.startswith((b"<!doctype html", b"<html")):
        return "html"
    return None


def _sniff_isobmff(data: bytes) -> str:
    """HEIF, AVIF and MP4 share the ISO base media container: read the brands."""
    box_size = int.from_bytes(data[0:4], "big")
    major = data[8:12]
    end = min(max(box_size, 16), len(data), 4096)
    compatible = {data[i : i + 4] for i in range(16, end - 3, 4)}
    if major in _AVIF_BRANDS:
        return "avif"
    if major in _HEIF_BRANDS:
        return "heif"
    if major in _GENERIC_HEIF_BRANDS:
        # mif1 is the still-image brand of both; the codec brand tells them apart.
        if compatible & _AVIF_BRANDS:
            return "avif"
        return "heif"
    if compatible & _AVIF_BRANDS:
        return "avif"
    if compatible & _HEIF_BRANDS:
        return "heif"
    if major == b"qt  ":
        return "quicktime"
    return "mp4"


@functools.cache
def _register_heif() -> None:
    """Teach Pillow to open HEIC/HEIF, once per process and only when needed.

    AVIF is decoded by Pillow's own plugin (Pillow >= 11.2 ships libavif).
    """
    import pillow_heif

    pillow_heif.register_heif_opener()


@dataclass(frozen=True)
class Crop:
    """A region of the (orientation-corrected) photo, as fractions of its size."""

    x: float
    y: float
    w: float
    h: float

    def box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """Pixel box ``(left, top, right, bottom)``; rounds outwards, at least 1 px."""
        left = min(max(0, math.floor(self.x * width)), width - 1)
        top = min(max(0, math.floor(self.y * height)), height - 1)
        right = max(left + 1, min(width, math.ceil((self.x + self.w) * width)))
        bottom = max(top + 1, min(height, math.ceil((self.y + self.h) * height)))
        return left, top, right, bottom


_CROP_RULE = "crop must be x,y,w,h as fractions 0-1, w,h > 0, x+w <= 1, y+h <= 1"
# Clients round (0.333 + 0.667); a sum this close to 1 is clamped, not refused.
_CROP_SLACK = 1e-3


def parse_crop(text: str) -> Crop:
    """``"x,y,w,h"`` -> :class:`Crop`; raises :class:`BadParameter` when malformed."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 4:
        raise BadParameter(f"{_CROP_RULE} (got {text!r})")
    try:
        x, y, w, h = (float(p) for p in parts)
    except ValueError:
        raise BadParameter(f"{_CROP_RULE} (got {text!r})") from None
    values = (x, y, w, h)
    if not all(math.isfinite(v) for v in values):
        raise BadParameter(f"{_CROP_RULE} (got {text!r})")
    if min(x, y) < 0 or w <= 0 or h <= 0 or x >= 1 or y >= 1:
        raise BadParameter(f"{_CROP_RULE} (got {text!r})")
    if x + w > 1 + _CROP_SLACK or y + h > 1 + _CROP_SLACK:
        raise BadParameter(f"{_CROP_RULE} (got {text!r})")
    return Crop(x, y, min(w, 1.0 - x), min(h, 1.0 - y))


def decode_image(
    data: bytes,
    *,
    max_pixels: int = 75_000_000,
    crop: Crop | None = None,
    draft_size: int | None = None,
) -> Image.Image:
    """Decode untrusted bytes into an RGB image.

    Raises :class:`UnsupportedMedia` for anything but JPEG, PNG, WebP, GIF
    (first frame), HEIC/HEIF and AVIF; :class:`TooLarge` (code
    ``image_too_large``) when the header claims more than ``max_pixels``;
    :class:`InvalidImage` when the bytes are truncated or corrupt.

    EXIF orientation is applied and transparency composited on white. With
    ``draft_size`` a JPEG is decoded at a reduced scale (1/2, 1/4, 1/8) chosen
    so the short side of the result -- of the ``crop`` region when one is
    given -- stays at least ``draft_size`` pixels.
    """
    if not data:
        raise InvalidImage("the image is empty (0 bytes)")
    fmt = sniff_format(data)
    if fmt not in SUPPORTED_FORMATS:
        what = f"a {fmt.upper()} file" if fmt else "not a recognised image format"
        raise UnsupportedMedia(
            f"unsupported image type: {what}; send JPEG, PNG, WebP, GIF, HEIC/HEIF or AVIF",
            detected=fmt,
        )
    if fmt == "heif":
        _register_heif()
    image = _open(data, fmt, max_pixels)
    try:
        if draft_size is not None and image.format in ("JPEG", "MPO"):
            _apply_draft(image, draft_size, crop)
        image.load()
        image = ImageOps.exif_transpose(image)
        if crop is not None:
            image = image.crop(crop.box(*image.size))
        return to_rgb(image)
    except Image.DecompressionBombError as exc:
        raise _too_large(str(exc)) from None
    except MemoryError:
        raise _too_large("not enough memory to decode it") from None
    except Exception as exc:
        # Decoders of hostile bytes fail in many ways (OSError, SyntaxError,
        # struct.error, KeyError in EXIF parsing...): all of them mean 422, never 500.
        raise InvalidImage(
            f"the {fmt.upper()} image is truncated or corrupt ({exc})", detected=fmt
        ) from None


def _too_large(detail: str) -> TooLarge:
    return TooLarge(f"the image has too many pixels: {detail}", code="image_too_large")


def _open(data: bytes, fmt: str, max_pixels: int) -> Image.Image:
    """Parse the header only (Pillow is lazy) and refuse oversized images."""
    try:
        image = Image.open(io.BytesIO(data), formats=_PIL_FORMATS[fmt])
    except Image.DecompressionBombError as exc:
        raise _too_large(str(exc)) from None
    except Exception as exc:  # same reasoning as in decode_image
        raise InvalidImage(
            f"the {fmt.upper()} image header is unreadable ({exc})", detected=fmt
        ) from None
    width, height = image.size
    if width <= 0 or height <= 0:
        raise InvalidImage(f"the {fmt.upper()} image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise _too_large(f"{width}x{height} is more than the limit of {max_pixels:,} pixels")
    return image


def _apply_draft(image: Image.Image, draft_size: int, crop: Crop | None) -> None:
    """Ask libjpeg for a DCT-scaled decode that keeps the region's short side."""
    width, height = image.size  # stored orientation
    orientation = image.getexif().get(0x0112, 1)
    # Orientations 5-8 swap the axes, and the crop is in displayed axes.
    shown_w, shown_h = (height, width) if orientation in (5, 6, 7, 8) else (width, height)
    cw, ch = (crop.w, crop.h) if crop is not None else (1.0, 1.0)
    region_short = min(cw * shown_w, ch * shown_h)
    factor = draft_size / region_short
    if factor > 0.5:
        return  # not even a 2x reduction is possible
    # Pillow picks the largest scale s with size // s >= the request on both axes.
    request = (math.ceil(width * factor), math.ceil(height * factor))
    image.draft("RGB", request)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB, compositing transparency on white."""
    if image.mode == "RGB" and "transparency" not in image.info:
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        image = _high_depth_to_l(image)
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or ("transparency" in image.info)
    if not has_alpha:
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _high_depth_to_l(image: Image.Image) -> Image.Image:
    """16-bit / float greyscale -> 8-bit; Pillow's convert would clip at 255."""
    arr = np.asarray(image, dtype=np.float64)
    top = float(arr.max(initial=0.0))
    if image.mode.startswith("I;16") or (image.mode == "I" and top > 255):
        peak = 65535.0
    elif image.mode == "F" and top <= 1.0:
        peak = 1.0
    else:
        peak = 255.0
    scaled = np.clip(arr * (255.0 / peak), 0, 255).astype(np.uint8)
    return Image.fromarray(scaled, mode="L")


def _resized(image: Image.Image, max_side: int | None) -> Image.Image:
    image = to_rgb(image)
    if max_side is not None and max(image.size) > max_side:
        image = image.copy()
        # reducing_gap: a fast box pre-shrink, then Lanczos; visually identical.
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return image


def encode_jpeg(image: Image.Image, *, max_side: int | None, quality: int = 85) -> bytes:
    """Re-encode from pixels as a baseline JPEG (no EXIF: strips GPS and the like)."""
    out = io.BytesIO()
    # comment=b"": Pillow would otherwise copy the source's text comment (JPEG COM,
    # PNG tEXt "comment") into the new file, so sent metadata would survive.
    _resized(image, max_side).save(out, "JPEG", quality=quality, optimize=True, comment=b"")
    return out.getvalue()


def encode_webp(image: Image.Image, *, max_side: int | None, quality: int = 80) -> bytes:
    """Re-encode from pixels as a lossy WebP (no metadata)."""
    out = io.BytesIO()
    _resized(image, max_side).save(out, "WEBP", quality=quality, method=4)
    return out.getvalue()
