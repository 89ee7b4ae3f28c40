"""The channel-plane normalisation in :func:`preprocess` is bit-identical to the plain formula."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from shoplens.models.base import FloatArray, PreprocessConfig, preprocess, resize_short_side


def _reference(image: Image.Image, cfg: PreprocessConfig) -> FloatArray:
    """The straightforward HWC version preprocess used before (the definition)."""
    image = resize_short_side(image.convert("RGB"), cfg.resize, cfg.interpolation)
    w, h = image.size
    left, top = (w - cfg.crop) // 2, (h - cfg.crop) // 2
    image = image.crop((left, top, left + cfg.crop, top + cfg.crop))
    scaled = np.asarray(image, dtype=np.float32) * np.float32(1.0 / 255.0)
    normed = (scaled - np.asarray(cfg.mean, np.float32)) / np.asarray(cfg.std, np.float32)
    return np.ascontiguousarray(normed.transpose(2, 0, 1), dtype=np.float32)


@pytest.mark.parametrize(
    "cfg",
    [
        PreprocessConfig(resize=256, crop=224),
        PreprocessConfig(
            resize=240, crop=224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)
        ),
    ],
)
def test_same_bits_as_the_plain_formula(
    photos: dict[str, Image.Image], cfg: PreprocessConfig
) -> None:
    for image in [*photos.values(), Image.new("L", (300, 200), 77)]:
        got = preprocess(image, cfg)
        assert got.dtype == np.float32 and got.flags.c_contiguous
        assert got.shape == (3, cfg.crop, cfg.crop)
        assert np.array_equal(got, _reference(image, cfg))
