"""effnet-lite0-ml: the multi-layer descriptor (head + stages 5 and 4) as a registered model.

Exported once per machine into the shared model cache like every model, so
these tests are quick after the first run.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shoplens.config import Settings
from shoplens.models import registry
from shoplens.models.base import ImageEmbedder, l2_normalise
from shoplens.models.onnx_embedder import OnnxEmbedder

pytest.importorskip("torch")
pytest.importorskip("timm")

from shoplens.models.torch_embedder import TorchEmbedder

NAME = "effnet-lite0-ml"
DIM = 1584  # 1280 (head) + 192 (stage 5) + 112 (stage 4)
HEAD = 1280


@pytest.fixture(scope="module")
def ml() -> OnnxEmbedder:
    loaded = registry.load_embedder(Settings(model=NAME))
    assert isinstance(loaded, OnnxEmbedder)
    return loaded


@pytest.fixture(scope="module")
def ml_torch() -> TorchEmbedder:
    return registry.load_torch_embedder(NAME, Settings())


@pytest.fixture(scope="module")
def batch(ml: OnnxEmbedder, photos: dict[str, Image.Image]) -> np.ndarray:
    return np.stack([ml.prepare(im) for im in photos.values()])


def test_registered_with_lite0_weights_and_preprocessing(ml: OnnxEmbedder) -> None:
    infos = {m.name: m for m in registry.available_models()}
    assert (infos[NAME].dim, infos[NAME].input_size) == (DIM, 224)
    assert infos[NAME + "-int8"].dim == DIM
    lite0 = registry.cached_model_dir("effnet-lite0", Settings())
    assert lite0 is not None
    assert ml.preprocess_config == OnnxEmbedder(lite0).preprocess_config
    meta = json.loads((ml.model_dir / "meta.json").read_text())
    assert (meta["name"], meta["dim"]) == (NAME, DIM)
    assert meta["weights_sha256"] == json.loads((lite0 / "meta.json").read_text())["weights_sha256"]
    # Same weights, own export folder (the name is part of the cache key).
    assert ml.model_dir.parent == lite0.parent and ml.model_dir != lite0
    assert ml.model_dir.name == f"{NAME}-{meta['weights_sha256'][:12]}"
    assert registry.cached_model_dir(NAME, Settings()) == ml.model_dir


def test_outputs_normalised_1584_d_float32(ml: OnnxEmbedder, batch: np.ndarray) -> None:
    assert (ml.name, ml.dim) == (NAME, DIM)
    vectors = ml.embed_prepared(batch)
    assert vectors.shape == (len(batch), DIM) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert ml.embed([]).shape == (0, DIM)


def test_torch_and_onnx_runtime_agree(
    ml: OnnxEmbedder, ml_torch: TorchEmbedder, batch: np.ndarray
) -> None:
    assert ml_torch.dim == DIM
    expected = ml_torch.embed_prepared(batch)
    cosine = np.sum(ml.embed_prepared(batch) * expected, axis=1)
    assert cosine.min() > 0.999, cosine


def test_head_part_is_the_plain_lite0_descriptor(
    ml: OnnxEmbedder, embedder: ImageEmbedder, batch: np.ndarray
) -> None:
    head = l2_normalise(ml.embed_prepared(batch)[:, :HEAD])
    plain = embedder.embed_prepared(batch)
    cosine = np.sum(head * plain, axis=1)
    assert cosine.min() > 0.99, cosine
    # The three parts are normalised separately before the final normalisation.
    parts = np.split(ml.embed_prepared(batch), [HEAD, HEAD + 192], axis=1)
    norms = np.stack([np.linalg.norm(p, axis=1) for p in parts], axis=1)
    assert np.allclose(norms, 1 / np.sqrt(3), atol=1e-4)


def test_head_dims_come_with_the_model(ml: OnnxEmbedder, ml_torch: TorchEmbedder) -> None:
    assert ml.head_dims == ml_torch.head_dims == HEAD


def test_an_export_older_than_head_dims_in_its_metadata_still_has_them(
    ml: OnnxEmbedder, tmp_path: Path
) -> None:
    old = tmp_path / ml.model_dir.name
    shutil.copytree(ml.model_dir, old)
    meta = json.loads((old / "meta.json").read_text())
    meta.pop("head_dims", None)
    (old / "meta.json").write_text(json.dumps(meta))
    assert OnnxEmbedder(old).head_dims == HEAD


def test_same_product_is_closer_than_other_products(
    ml: OnnxEmbedder, photos: dict[str, Image.Image]
) -> None:
    banana = photos["banana.jpg"]
    flipped = banana.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    v = ml.embed([banana, flipped, photos["granny-smith.jpg"], photos["pineapple.jpg"]])
    assert v[0] @ v[1] > max(v[0] @ v[2], v[0] @ v[3])


def test_int8_variant_loads_through_the_registry(ml: OnnxEmbedder, batch: np.ndarray) -> None:
    # Quantized once per machine from the float32 export, like effnet-lite0-int8.
    int8 = registry.load_embedder(Settings(model=NAME + "-int8"))
    assert isinstance(int8, OnnxEmbedder)
    assert (int8.name, int8.dim) == (NAME + "-int8", DIM)
    assert int8.head_dims == HEAD
    assert int8.model_dir.parent == ml.model_dir.parent
    cosine = np.sum(int8.embed_prepared(batch) * ml.embed_prepared(batch), axis=1)
    assert cosine.mean() > 0.95, cosine
