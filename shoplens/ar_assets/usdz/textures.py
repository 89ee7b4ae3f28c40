"""Texture images for USD: the PNG/JPEG files a UsdUVTexture can read.

USDZ allows only PNG and JPEG, so WebP is re-encoded as PNG and KTX2/BasisU is
transcoded to RGBA by the Basis transcoder Shoplens already serves to browsers
(``static/basis``, run in Node by ``node/ktx2_rgba.js``). Metallic and roughness
share one glTF texture but are single channels in UsdPreviewSurface, so they
become one-channel PNGs. Names are ``img<source>_<channel>.<ext>``: derived from
the glTF, never from time or paths, so the same upload gives the same USDZ.
"""

from __future__ import annotations

import io
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from PIL import Image

from shoplens.ar_assets import tools
from shoplens.ar_assets.gltf import Gltf, as_int, view_bytes

log = logging.getLogger(__name__)

KTX2_MAGIC = b"\xabKTX 20\xbb\r\n\x1a\n"
BASIS_DIR = Path(__file__).resolve().parents[1] / "static" / "basis"
KTX2_SCRIPT = tools.NODE_SCRIPTS / "ktx2_rgba.js"


def _ktx2_to_image(data: bytes) -> Image.Image | None:
    """Decode a KTX2 (BasisU ETC1S/UASTC, or plain RGBA8) to RGBA; None if out of reach."""
    nm = tools.find_tools().node_modules
    if nm is None:
        return None
    with tempfile.TemporaryDirectory(prefix="ktx2-") as tmp:
        src, out = Path(tmp) / "in.ktx2", Path(tmp) / "out.rgba"
        src.write_bytes(data)
        try:
            res = tools.run_node(
                [str(KTX2_SCRIPT), str(nm), str(BASIS_DIR), str(src), str(out)], timeout=120.0
            )
        except tools.ToolFailed as exc:
            log.info("KTX2 transcoding failed: %s", exc)
            return None
        try:
            meta = json.loads(res.strip().splitlines()[-1])
            w, h = int(meta["width"]), int(meta["height"])
            raw = out.read_bytes()
        except (ValueError, KeyError, IndexError, OSError):
            return None
        if w < 1 or h < 1 or len(raw) != w * h * 4:
            return None
        return Image.frombytes("RGBA", (w, h), raw)


class Textures:
    """Writes the files of one USDZ into ``folder`` and remembers what was lost."""

    def __init__(self, g: Gltf, folder: Path) -> None:
        self.g, self.folder = g, folder
        self.files: dict[tuple[int, str], str | None] = {}
        self.lost: list[str] = []  # textures a material needed and did not get
        self.approximated: list[str] = []
        self.ktx2: dict[int, Image.Image | None] = {}
        self.why: dict[int, str] = {}  # image index -> why it could not be made

    def source(self, tex_index: int) -> int:
        textures = self.g.items("textures")
        if not 0 <= tex_index < len(textures):
            return -1
        tex = textures[tex_index]
        exts = tex.get("extensions") or {}
        # The extension's source first: a plain ``source`` beside it is the fallback
        # for viewers without the extension, often a smaller or blank image.
        for ext in ("KHR_texture_basisu", "EXT_texture_webp"):
            if isinstance(exts.get(ext), dict):
                src = as_int(exts[ext].get("source"))
                if src >= 0:
                    return src
        return as_int(tex.get("source"))

    def sampler(self, tex_index: int) -> dict[str, Any]:
        textures = self.g.items("textures")
        if not 0 <= tex_index < len(textures):
            return {}
        samplers = self.g.items("samplers")
        si = as_int(textures[tex_index].get("sampler"))
        return samplers[si] if 0 <= si < len(samplers) else {}

    def file(self, tex_index: int, channel: str, what: str) -> str | None:
        """Relative path of a PNG/JPEG for texture ``tex_index`` ('rgba', 'g' or 'b');
        None, with a line in ``lost`` naming ``what`` needed it, if it cannot be made."""
        src = self.source(tex_index)
        key = (src, channel)
        if key not in self.files:
            self.files[key] = self._write(src, channel)
        name = self.files[key]
        if name is None:
            self.lost.append(f"{what}: {self.why[src]}, texture dropped")
        return name

    def _write(self, src: int, channel: str) -> str | None:
        images = self.g.items("images")
        resolved = None
        if 0 <= src < len(images) and "bufferView" in images[src]:
            resolved = view_bytes(self.g, as_int(images[src]["bufferView"]))
        if resolved is None:
            self.why[src] = f"image {src} unavailable"
            return None
        data = resolved[0]
        try:
            if data.startswith(KTX2_MAGIC):
                # One Node run per image, not per channel (metal and rough share one).
                if src not in self.ktx2:
                    self.ktx2[src] = _ktx2_to_image(data)
                im = self.ktx2[src]
                if im is None:
                    self.why[src] = f"KTX2 image {src} could not be transcoded"
                    return None
                self.approximated.append(f"KTX2 image {src} transcoded to PNG")
                out_bytes, ext = _png(im, channel), "png"
            else:
                with Image.open(io.BytesIO(data)) as opened:
                    fmt = opened.format
                    if channel == "rgba" and fmt in ("PNG", "JPEG"):
                        out_bytes, ext = data, "png" if fmt == "PNG" else "jpg"
                    else:
                        opened.load()
                        out_bytes, ext = _png(opened, channel), "png"
        except (OSError, ValueError, SyntaxError):
            self.why[src] = f"image {src} is not readable for USDZ"
            return None
        name = f"img{src}_{channel}.{ext}"
        (self.folder / name).write_bytes(out_bytes)
        return name


def _png(im: Image.Image, channel: str) -> bytes:
    conv = im.convert("RGBA") if im.mode not in ("RGB", "RGBA") else im
    if channel in ("g", "b"):
        conv = conv.getchannel("G" if channel == "g" else "B")
    buf = io.BytesIO()
    # No text chunks and fixed settings: the same pixels give the same bytes.
    conv.save(buf, "PNG", optimize=False)
    return buf.getvalue()
