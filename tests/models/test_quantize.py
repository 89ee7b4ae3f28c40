"""The int8 model: made from the float32 export, runs on ONNX Runtime, agrees with float32."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from shoplens.errors import ModelUnavailable
from shoplens.models.base import ImageEmbedder
from shoplens.models.cache import META_FILE, MODEL_FILE
from shoplens.models.onnx_embedder import OnnxEmbedder
from shoplens.models.quantize import (
    base_name,
    calibration_photos,
    int8_name,
    is_complete_int8,
    is_int8,
    quantize_export,
)

# A few calibration photos keep the test fast; the real export uses all 81.
CALIBRATION = 12


@pytest.fixture(scope="module")
def int8_dir(embedder: ImageEmbedder, tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert isinstance(embedder, OnnxEmbedder)
    cache = tmp_path_factory.mktemp("int8-cache")
    return quantize_export(
        embedder.model_dir, cache, photos=calibration_photos()[::7][:CALIBRATION]
    )


@pytest.fixture(scope="module")
def int8(int8_dir: Path) -> OnnxEmbedder:
    return OnnxEmbedder(int8_dir, threads=1)


def test_names() -> None:
    assert int8_name("effnet-lite0") == "effnet-lite0-int8"
    assert int8_name("effnet-lite0-int8") == "effnet-lite0-int8"
    assert base_name("effnet-lite0-int8") == "effnet-lite0"
    assert base_name("effnet-lite0") == "effnet-lite0"
    assert is_int8("effnet-lite0-int8") and not is_int8("effnet-lite0")


def test_int8_model_exists_beside_float32(int8_dir: Path, embedder: ImageEmbedder) -> None:
    assert is_complete_int8(int8_dir)
    assert int8_dir.name.startswith("effnet-lite0-int8-")
    graph = onnx.load(str(int8_dir / MODEL_FILE)).graph
    ops = {node.op_type for node in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    # Weights are stored as int8: the file is a fraction of the float32 one.
    assert isinstance(embedder, OnnxEmbedder)
    fp32_size = (embedder.model_dir / MODEL_FILE).stat().st_size
    assert (int8_dir / MODEL_FILE).stat().st_size < 0.4 * fp32_size


def test_int8_runs_and_agrees_with_float32(
    int8: OnnxEmbedder, embedder: ImageEmbedder, photos: dict[str, Image.Image]
) -> None:
    assert (int8.name, int8.dim) == ("effnet-lite0-int8", embedder.dim)
    assert int8.preprocess_config == embedder.preprocess_config
    images = list(photos.values())
    got = int8.embed(images)
    assert got.shape == (len(images), embedder.dim) and got.dtype == np.float32
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cosine = np.sum(got * embedder.embed(images), axis=1)
    assert cosine.mean() > 0.95
    assert cosine.min() > 0.9
    assert int8.meta["quantization"]["cosine_to_float32"] > 0.95
    assert int8.head_dims is None and int8.meta["head_dims"] is None


def test_int8_keeps_products_apart(int8: OnnxEmbedder, photos: dict[str, Image.Image]) -> None:
    banana = photos["banana.jpg"]
    flipped = banana.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    v = int8.embed([banana, flipped, photos["granny-smith.jpg"], photos["pineapple.jpg"]])
    assert v[0] @ v[1] > max(v[0] @ v[2], v[0] @ v[3])


def test_cached_int8_is_reused(int8_dir: Path, embedder: ImageEmbedder) -> None:
    assert isinstance(embedder, OnnxEmbedder)
    before = (int8_dir / MODEL_FILE).stat().st_mtime_ns
    again = quantize_export(embedder.model_dir, int8_dir.parent, photos=[Path("/nonexistent")])
    assert again == int8_dir
    assert (int8_dir / MODEL_FILE).stat().st_mtime_ns == before


def test_no_calibration_photos_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match="calibration"):
        calibration_photos(tmp_path)


def test_int8_of_an_older_float32_export_is_made_again(
    int8_dir: Path, embedder: ImageEmbedder, tmp_path: Path
) -> None:
    assert isinstance(embedder, OnnxEmbedder)
    fp32 = tmp_path / embedder.model_dir.name
    shutil.copytree(embedder.model_dir, fp32)
    cache = tmp_path / "cache"
    shutil.copytree(int8_dir, cache / int8_dir.name)
    assert is_complete_int8(cache / int8_dir.name, embedder.model_dir)
    meta = json.loads((fp32 / META_FILE).read_text())
    meta["created"] = "2099-01-01T00:00:00+00:00"  # as if exported again since
    (fp32 / META_FILE).write_text(json.dumps(meta))
    assert not is_complete_int8(cache / int8_dir.name, fp32)
    again = quantize_export(fp32, cache, photos=calibration_photos()[:4])
    assert again == cache / int8_dir.name
    assert is_complete_int8(again, fp32)
