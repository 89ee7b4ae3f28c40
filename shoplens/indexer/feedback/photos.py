"""Shopper photo files: re-encoded (EXIF and every other metadata dropped), bounded
in size, held while a search may still get feedback, kept once confirmed.

``data_dir/feedback/held/<search_id>.jpg``: the photo of a recent search, only
with ``SHOPLENS_LEARN_FROM_FEEDBACK=true``; deleted when the feedback window
closes without a confirmation. ``data_dir/feedback/photos/<photo_id>.jpg``: a
kept shopper photo, deleted with its row (review, retention, ``DELETE``).
"""

from __future__ import annotations

import os
from io import BytesIO
from pathlib import Path

from PIL import Image, ImageOps

from shoplens.files.atomic import write_atomic

# Longest side of a kept photo: the model's input is 224-320 px, so this keeps
# every pixel it can use (and room for a bigger model) at ~60 KB a photo.
MAX_SIDE = 640
JPEG_QUALITY = 85
# A JPEG is decoded at a reduced scale (1/2, 1/4, 1/8) keeping its short side at
# least this: a 4:3 photo still has MAX_SIDE on its long side, for a quarter of
# a 12 MP photo's decoding work (it shares the CPU with searches).
DRAFT_SIDE = MAX_SIDE * 3 // 4


def feedback_dir(data_dir: Path) -> Path:
    return data_dir / "feedback"


def held_path(data_dir: Path, search_id: str) -> Path:
    return feedback_dir(data_dir) / "held" / f"{search_id}.jpg"


def kept_path(data_dir: Path, photo_id: str) -> Path:
    return feedback_dir(data_dir) / "photos" / f"{photo_id}.jpg"


def reencode(image: Image.Image) -> bytes:
    """A decoded photo -> plain JPEG bytes: orientation applied, at most
    :data:`MAX_SIDE` px, no EXIF/XMP/ICC (a phone photo's EXIF carries its GPS
    position and the device; none of it may be kept)."""
    img = ImageOps.exif_transpose(image).convert("RGB")
    img.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.BICUBIC, reducing_gap=2.0)
    clean = Image.new("RGB", img.size)
    clean.paste(img)  # a fresh image: no info dict, nothing of the upload's metadata
    out = BytesIO()
    clean.save(out, "JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


def hold(data_dir: Path, search_id: str, jpeg: bytes) -> None:
    # No fsync: a held photo lost in a crash only means one search cannot be learnt from.
    write_atomic(held_path(data_dir, search_id), jpeg, fsync=False)


def keep(data_dir: Path, search_id: str, photo_id: str) -> bool:
    """Move a held photo to the kept ones; False when it is not held (any more)."""
    target = kept_path(data_dir, photo_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(held_path(data_dir, search_id), target)
    except FileNotFoundError:
        return False
    return True


def drop_held(data_dir: Path, search_id: str) -> None:
    held_path(data_dir, search_id).unlink(missing_ok=True)


def drop_kept(data_dir: Path, photo_id: str) -> None:
    kept_path(data_dir, photo_id).unlink(missing_ok=True)


def held_names(data_dir: Path) -> list[str]:
    """Search ids with a held photo (to sweep the ones whose window closed)."""
    folder = feedback_dir(data_dir) / "held"
    if not folder.is_dir():
        return []
    return [p.stem for p in folder.glob("*.jpg")]
