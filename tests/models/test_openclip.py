"""OpenCLIP from a local checkpoint, with a tiny randomly initialised architecture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shoplens.config import Settings
from shoplens.errors import ModelUnavailable
from shoplens.models.base import TextEmbedder
from shoplens.models.onnx_embedder import OnnxEmbedder
from tests.support import TINY_OPENCLIP as TINY
from tests.support import tiny_openclip_checkpoint

torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")

from shoplens.models import registry  # noqa: E402


@pytest.fixture(scope="module")
def tiny_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    folder = tmp_path_factory.mktemp("tiny-clip")
    return Settings(
        model="open_clip:tiny",
        openclip_checkpoint=tiny_openclip_checkpoint(folder),
        model_cache_dir=tmp_path_factory.mktemp("model-cache"),
        data_dir=folder / "data",
    )


def _images() -> list[Image.Image]:
    return [Image.new("RGB", (90, 70), (40 * i, 120, 200 - 30 * i)) for i in range(4)]


def test_image_tower_on_onnx_runtime_matches_torch(tiny_settings: Settings) -> None:
    embedder = registry.load_embedder(tiny_settings)
    assert isinstance(embedder, OnnxEmbedder)
    assert (embedder.name, embedder.dim) == ("open_clip:tiny", 32)
    cfg = embedder.preprocess_config
    assert (cfg.resize, cfg.crop, cfg.interpolation) == (64, 64, "bicubic")
    assert cfg.mean == pytest.approx(TINY["preprocess_cfg"]["mean"])  # type: ignore[index]
    vectors = embedder.embed(_images())
    assert vectors.shape == (4, 32) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    eager = registry.load_torch_embedder(tiny_settings.model, tiny_settings)
    assert np.sum(vectors * eager.embed(_images()), axis=1).min() > 0.999
    assert embedder.model_dir.parent == tiny_settings.model_cache_dir
    assert embedder.model_dir.name.startswith("open_clip_tiny-")
    assert embedder.head_dims is None and eager.head_dims is None


def test_text_vectors_share_the_image_space(tiny_settings: Settings) -> None:
    text = registry.load_text_embedder(tiny_settings)
    assert isinstance(text, TextEmbedder)
    vectors = text.embed_text(["a green apple", "a bunch of bananas", "milk"])
    assert vectors.shape == (3, 32) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert text.embed_text([]).shape == (0, 32)
    # Same weights, same text -> same vector (the tower is deterministic in eval mode).
    assert np.allclose(text.embed_text(["milk"])[0], vectors[2], atol=1e-5)


def test_listed_with_its_dimension(tiny_settings: Settings) -> None:
    registry.export_model(tiny_settings.model, tiny_settings)
    info = {m.name: m for m in registry.available_models(tiny_settings)}["open_clip:tiny"]
    assert (info.dim, info.input_size, info.supports_text) == (32, 64, True)


def test_missing_checkpoint_is_model_unavailable(tiny_settings: Settings, tmp_path: Path) -> None:
    missing = tiny_settings.model_copy(
        update={"openclip_checkpoint": tmp_path / "nope.pt", "model_cache_dir": tmp_path}
    )
    with pytest.raises(ModelUnavailable, match="does not exist"):
        registry.load_embedder(missing)
    unset = missing.model_copy(update={"openclip_checkpoint": None})
    with pytest.raises(ModelUnavailable, match="SHOPLENS_OPENCLIP_CHECKPOINT"):
        registry.load_text_embedder(unset)


def test_checkpoint_of_another_architecture_is_refused(
    tiny_settings: Settings, tmp_path: Path
) -> None:
    assert tiny_settings.openclip_checkpoint is not None
    bad = tmp_path / "other.pt"
    torch.save({"visual.proj": torch.zeros(3, 3)}, bad)
    wrong = tiny_settings.model_copy(
        update={"model": "open_clip:RN50", "openclip_checkpoint": bad, "model_cache_dir": tmp_path}
    )
    with pytest.raises(ModelUnavailable, match="cannot load the OpenCLIP checkpoint"):
        registry.load_torch_embedder(wrong.model, wrong)


def test_unknown_architecture_is_refused(tiny_settings: Settings, tmp_path: Path) -> None:
    ckpt = tmp_path / "weights.pt"
    torch.save({}, ckpt)
    settings = tiny_settings.model_copy(
        update={"model": "open_clip:NoSuchArch", "openclip_checkpoint": ckpt}
    )
    with pytest.raises(ModelUnavailable, match="no architecture 'NoSuchArch'"):
        registry.load_torch_embedder(settings.model, settings)
