"""Where a catalog photo lives and what it is called: both follow from the sha256
of its source bytes, so the same bytes are stored and indexed once."""

from __future__ import annotations

from pathlib import Path

PHOTO_MAX_SIDE = 1024
IMAGE_ID_HEX = 20


def image_id_for(sha256: str) -> str:
    """Public, content-addressed image id: the first 20 hex chars of the sha256."""
    return sha256[:IMAGE_ID_HEX]


def photo_path(data_dir: Path, sha256: str) -> Path:
    """Where the re-encoded catalog photo of these source bytes is kept."""
    return data_dir / "images" / sha256[:2] / f"{sha256}.jpg"
