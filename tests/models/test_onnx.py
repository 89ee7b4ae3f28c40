"""The ONNX Runtime path: same vectors as torch, thread-safe, exported once."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shoplens.config import Settings
from shoplens.models.base import ImageEmbedder, PreprocessConfig
from shoplens.models.cache import EXPORT_FORMAT, is_complete, model_dir_for
from shoplens.models.onnx_embedder import OnnxEmbedder

torch = pytest.importorskip("torch")

from shoplens.models.export import export_to_cache  # noqa: E402
from shoplens.models.registry import load_torch_embedder  # noqa: E402
from shoplens.models.torch_embedder import NormalisedFeatures, TorchEmbedder  # noqa: E402


@pytest.fixture(scope="module")
def torch_embedder() -> TorchEmbedder:
    return load_torch_embedder("effnet-lite0", Settings())


def test_embedder_contract(embedder: ImageEmbedder, photos: dict[str, Image.Image]) -> None:
    assert isinstance(embedder, OnnxEmbedder)
    assert (embedder.name, embedder.dim) == ("effnet-lite0", 1280)
    vectors = embedder.embed(list(photos.values()))
    assert vectors.shape == (len(photos), 1280) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.embed([]).shape == (0, 1280)
    assert embedder.head_dims is None  # one pooled head, nothing to fall back to


def test_torch_and_onnx_runtime_agree(
    embedder: ImageEmbedder, torch_embedder: TorchEmbedder, photos: dict[str, Image.Image]
) -> None:
    images = list(photos.values())
    batch = np.stack([embedder.prepare(im) for im in images])
    assert np.array_equal(batch, np.stack([torch_embedder.prepare(im) for im in images]))
    cosine = np.sum(embedder.embed_prepared(batch) * torch_embedder.embed_prepared(batch), axis=1)
    assert cosine.min() > 0.999


def test_same_product_is_closer_than_other_products(
    embedder: ImageEmbedder, photos: dict[str, Image.Image]
) -> None:
    banana = photos["banana.jpg"]
    flipped = banana.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    v = embedder.embed([banana, flipped, photos["granny-smith.jpg"], photos["pineapple.jpg"]])
    assert v[0] @ v[1] > max(v[0] @ v[2], v[0] @ v[3])


def test_embed_prepared_is_thread_safe(
    embedder: ImageEmbedder, photos: dict[str, Image.Image]
) -> None:
    batch = np.stack([embedder.prepare(im) for im in photos.values()])
    expected = embedder.embed_prepared(batch)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: embedder.embed_prepared(batch), range(8)))
    for got in results:
        assert np.allclose(got, expected, atol=1e-5)


def test_export_metadata(embedder: OnnxEmbedder) -> None:
    meta = json.loads((embedder.model_dir / "meta.json").read_text())
    assert meta["name"] == "effnet-lite0" and meta["dim"] == 1280
    assert meta["opset"] >= 17 and meta["export_format"] == EXPORT_FORMAT
    assert embedder.model_dir.name == f"effnet-lite0-{meta['weights_sha256'][:12]}"
    cfg = json.loads((embedder.model_dir / "preprocess.json").read_text())
    assert PreprocessConfig.from_dict(cfg) == embedder.preprocess_config


def _tiny_embedder(seed: int = 0, head_dims: int | None = None) -> TorchEmbedder:
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=2),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
    )
    return TorchEmbedder(
        NormalisedFeatures(net),
        name="tiny:test",
        dim=8,
        preprocess_config=PreprocessConfig(resize=32, crop=32),
        weights_sha256=f"{seed:064x}",
        head_dims=head_dims,
    )


def test_export_happens_once_then_is_reused(tmp_path: Path) -> None:
    tiny = _tiny_embedder()
    first = export_to_cache(tiny, tmp_path)
    assert first == model_dir_for(tmp_path, "tiny:test", tiny.weights_sha256)
    assert first.name == "tiny_test-000000000000"
    stamp = (first / "model.onnx").stat()
    second = export_to_cache(tiny, tmp_path)
    assert second == first
    again = (second / "model.onnx").stat()
    assert (again.st_ino, again.st_mtime_ns) == (stamp.st_ino, stamp.st_mtime_ns)
    # Nothing half-made is left beside it.
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name or ".old-" in p.name] == []
    images = [Image.new("RGB", (50, 40), (10 * i, 100, 200)) for i in range(3)]
    onnx_vectors = OnnxEmbedder(first).embed(images)
    assert np.sum(onnx_vectors * tiny.embed(images), axis=1).min() > 0.999


def test_head_dims_travel_in_the_export_metadata(tmp_path: Path) -> None:
    # Tiny weight hashes share their first 12 digits: one cache per export.
    plain = export_to_cache(_tiny_embedder(4), tmp_path / "plain")
    assert json.loads((plain / "meta.json").read_text())["head_dims"] is None
    assert OnnxEmbedder(plain).head_dims is None
    headed = export_to_cache(_tiny_embedder(5, head_dims=4), tmp_path / "headed")
    assert json.loads((headed / "meta.json").read_text())["head_dims"] == 4
    assert OnnxEmbedder(headed).head_dims == 4


def test_half_written_or_outdated_exports_are_redone(tmp_path: Path) -> None:
    tiny = _tiny_embedder(1)
    target = model_dir_for(tmp_path, tiny.name, tiny.weights_sha256)
    target.mkdir(parents=True)
    (target / "model.onnx").write_bytes(b"half a model")  # a killed, non-atomic writer
    assert not is_complete(target)
    assert export_to_cache(tiny, tmp_path) == target
    assert is_complete(target)
    meta = json.loads((target / "meta.json").read_text())
    meta["export_format"] = EXPORT_FORMAT - 1
    (target / "meta.json").write_text(json.dumps(meta))
    assert not is_complete(target)
    export_to_cache(tiny, tmp_path)
    assert is_complete(target)


def test_stale_temp_folders_are_swept(tmp_path: Path) -> None:
    tiny = _tiny_embedder(2)
    target = model_dir_for(tmp_path, tiny.name, tiny.weights_sha256)
    leftover = tmp_path / f".{target.name}.tmp-killed"
    leftover.mkdir()
    os.utime(leftover, (0, 0))
    export_to_cache(tiny, tmp_path)
    assert not leftover.exists()


def test_concurrent_exports_agree(tmp_path: Path) -> None:
    tiny = _tiny_embedder(3)
    with ThreadPoolExecutor(2) as pool:
        dirs = list(pool.map(lambda _: export_to_cache(tiny, tmp_path), range(2)))
    assert dirs[0] == dirs[1] and is_complete(dirs[0])
    assert [p for p in tmp_path.iterdir() if ".tmp-" in p.name] == []
