"""Texture checks: every image (by URI or buffer view) decodes fully, in an allowed format.

PNG, JPEG and WebP are decoded with Pillow (decompression bombs refused); KTX2
textures are only sized from their header.
"""

from __future__ import annotations

import io
import struct
import warnings
from pathlib import Path

from PIL import Image

from shoplens.ar_assets.gltf import Gltf, as_int, view_bytes
from shoplens.ar_assets.report import Report
from shoplens.ar_assets.validation.resources import resolve_uri

KTX2_MAGIC = b"\xabKTX 20\xbb\r\n\x1a\n"


def _image_size(data: bytes, ptr: str, report: Report) -> tuple[int, int] | None:
    if data[:12] == KTX2_MAGIC:
        if len(data) < 80:
            report.error("IMAGE_KTX2_TRUNCATED", "KTX2 header is truncated", ptr)
            return None
        width, height = struct.unpack_from("<II", data, 20)
        if width < 1:
            report.error("IMAGE_KTX2_INVALID", "KTX2 header has zero width", ptr)
            return None
        return width, max(height, 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                if im.format not in ("PNG", "JPEG", "WEBP"):
                    report.error(
                        "IMAGE_UNSUPPORTED_FORMAT", f"{im.format} textures are not allowed", ptr
                    )
                    return None
                im.load()  # decode fully: a truncated texture must not pass
                return im.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombWarning) as exc:
        report.error("IMAGE_UNDECODABLE", f"the image does not decode: {exc}", ptr)
    except Image.DecompressionBombError as exc:
        report.error("IMAGE_TOO_LARGE", str(exc), ptr)
    return None


def check_images(g: Gltf, base: Path | None, report: Report) -> list[tuple[int, int]]:
    """The (width, height) of every image that decodes; errors for the others."""
    sizes: list[tuple[int, int]] = []
    for i, img in enumerate(g.items("images")):
        ptr = f"/images/{i}"
        data: bytes | None = None
        if "uri" in img:
            data = resolve_uri(img["uri"], ptr + "/uri", base, report)
        elif "bufferView" in img:
            resolved = view_bytes(g, as_int(img["bufferView"]))
            if resolved is None:
                report.error("IMAGE_BUFFER_VIEW_INVALID", "image bufferView is unreadable", ptr)
            else:
                data = resolved[0]
        else:
            report.error("IMAGE_NO_DATA", "image has neither uri nor bufferView", ptr)
        if data is not None:
            size = _image_size(data, ptr, report)
            if size is not None:
                sizes.append(size)
    return sizes
