"""Phone-sized renditions of catalog photos, cached on disk.

Image ids are content-addressed (derived from the photo's sha256), so a
rendition of ``(image_id, width, format)`` never changes: it is written once,
atomically, and served with an immutable cache header and a strong ETag.

The directory is a cache with a byte budget (``Settings.renditions_cache_max_mb``):
a hit touches the file, a write past the budget evicts the least recently used
renditions (:mod:`shoplens.files.disk_lru`), and an evicted one is simply
rendered again on its next request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from shoplens.errors import NotFound
from shoplens.files.atomic import write_atomic
from shoplens.files.disk_lru import DiskLru, PruneReport
from shoplens.models.decode import decode_image, encode_jpeg, encode_webp

MIN_WIDTH = 32
MAX_WIDTH = 1024
DEFAULT_WIDTH = 512

_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


@dataclass(frozen=True)
class Rendition:
    data: bytes
    media_type: str
    etag: str


class Renditions:
    def __init__(self, cache_dir: Path, *, max_pixels: int) -> None:
        self._dir = cache_dir
        self._max_pixels = max_pixels
        self._lru = DiskLru(cache_dir)

    @staticmethod
    def etag(image_id: str, width: int, fmt: str) -> str:
        return f'"{image_id}-w{width}.{fmt}"'

    def get(
        self, image_id: str, source: Path, width: int, fmt: str, *, max_bytes: int | None = None
    ) -> Rendition:
        """The rendition (blocking: decodes and encodes on a miss).

        ``max_bytes``: the cache's budget, enforced after a miss is written
        (None: never evict)."""
        if not _SAFE_ID.match(image_id):
            raise NotFound(f"unknown image {image_id!r}")
        media_type = "image/webp" if fmt == "webp" else "image/jpeg"
        path = self._dir / image_id[:2] / f"{image_id}-w{width}.{fmt}"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            data = self._render(source, width, fmt)
            write_atomic(path, data, fsync=False)
            if max_bytes is not None:
                self._lru.wrote(len(data), max_bytes)
        else:
            self._lru.touch(path)
        return Rendition(data, media_type, self.etag(image_id, width, fmt))

    def prune(self, max_bytes: int, *, dry_run: bool = False) -> PruneReport:
        """Evict least recently used renditions until the cache fits ``max_bytes``."""
        return self._lru.prune(max_bytes, dry_run=dry_run)

    def _render(self, source: Path, width: int, fmt: str) -> bytes:
        try:
            raw = source.read_bytes()
        except FileNotFoundError:
            raise NotFound("the catalog photo is missing from the data dir") from None
        image = decode_image(raw, max_pixels=self._max_pixels, draft_size=width)
        if image.width > width:  # never upscale: small photos keep their size
            height = max(1, round(image.height * width / image.width))
            image = image.resize((width, height), Image.Resampling.LANCZOS, reducing_gap=3.0)
        if fmt == "webp":
            return encode_webp(image, max_side=None, quality=80)
        return encode_jpeg(image, max_side=None, quality=82)
