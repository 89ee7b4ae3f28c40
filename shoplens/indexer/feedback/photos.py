"""Shopper photo files: re-encoded (EXIF and every other metadata dropped) and
bounded in size, written only once a confirmation keeps them.

``data_dir/feedback/photos/<photo_id>.jpg``: a kept shopper photo, deleted with
its row (review, retention, ``DELETE``). Unconfirmed search photos never
reach the disk (:mod:`shoplens.indexer.feedback.book` holds them in memory).
"""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

from PIL import Image, ImageOps

from shoplens.files.atomic import write_atomic

# Longest side of a kept photo: the model's input is 224-320 px, so this keeps
# every pixel it can use (and room for a bigger model) at ~60 KB a photo.
MAX_SIDE = 640
JPEG_QUALITY = 85
# A JPEG is decoded at a reduced scale (1/2, 1/4, 1/8) keeping its short side at
# least this: a 4:3 photo still has MAX_SIDE on its long side, for a fraction of
# a 12 MP photo's decoding work (it shares the CPU with searches).
DRAFT_SIDE = MAX_SIDE * 3 // 4


def feedback_dir(data_dir: Path) -> Path:
    return data_dir / "feedback"


def views_root(data_dir: Path) -> Path:
    """Where every model's learning views of kept photos live (``feedback.views``)."""
    return feedback_dir(data_dir) / "views"


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


def write_kept(data_dir: Path, photo_id: str, jpeg: bytes) -> None:
    write_atomic(kept_path(data_dir, photo_id), jpeg)


def drop_kept(data_dir: Path, photo_id: str) -> None:
    """Delete a kept photo and every model's learning views of it (``feedback.views``)."""
    kept_path(data_dir, photo_id).unlink(missing_ok=True)
    views = views_root(data_dir)
    if views.is_dir():
        for model_dir in views.iterdir():
            (model_dir / f"{photo_id}.npy").unlink(missing_ok=True)
