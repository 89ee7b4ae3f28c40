"""Fixtures of the models tests: the licensed photos and a network-free process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from shoplens.config import Settings
from shoplens.models.base import ImageEmbedder
from shoplens.models.decode import decode_image

# Photo file -> the ImageNet-1k class index the default model must predict.
IMAGENET_CLASSES = {
    "granny-smith.jpg": 948,
    "banana.jpg": 954,
    "lemon.jpg": 951,
    "orange.jpg": 950,
    "red-bell-pepper.jpg": 945,
    "pineapple.jpg": 953,
}


@pytest.fixture(scope="session", autouse=True)
def _offline() -> Iterator[None]:
    """Nothing in these tests may reach the network (OpenCLIP would try HF Hub)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        yield


@pytest.fixture(scope="session")
def embedder() -> ImageEmbedder:
    """These tests are about effnet-lite0 itself (ImageNet check, export, ORT
    agreement), whatever model the settings make the default."""
    from shoplens.models.registry import load_embedder

    return load_embedder(Settings(model="effnet-lite0"))


@pytest.fixture(scope="session")
def photo_dir(fixtures_dir: Path) -> Path:
    return fixtures_dir / "images"


@pytest.fixture(scope="session")
def photo_bytes(photo_dir: Path) -> dict[str, bytes]:
    return {name: (photo_dir / name).read_bytes() for name in IMAGENET_CLASSES}


@pytest.fixture(scope="session")
def photos(photo_bytes: dict[str, bytes]) -> dict[str, Image.Image]:
    return {name: decode_image(data) for name, data in photo_bytes.items()}
